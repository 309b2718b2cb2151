"""CLIP: the image side of keras-hub's ``CLIPBackbone`` (presets ``clip_vit_base_patch16`` ...).

The encoder is ``CLIPVisionEncoder`` (pre-norm, QuickGELU, final layer norm over the sequence); the
embedding is its CLS token, optionally through CLIP's learnt image projection
(``backbones.<name>.projected: true``: the vector CLIP matches against text). The text tower of a
loaded ``CLIPBackbone`` is dropped.

Weights: a built-in preset name, a keras-hub preset folder holding a ``CLIPBackbone`` (projection
available) or a bare ``CLIPVisionEncoder`` (``projected: false`` only). Hugging Face ``clip``
checkpoints are not read: keras-hub 0.32 ships no converter for them. Positions are learnt and not
interpolated, so ``image_size`` must equal the checkpoint's (224 for the ViT-B presets).

``random`` builds a ``CLIPBackbone`` at the size in ``backbones.<name>.random`` with a projection
as wide as the encoder and a one-layer placeholder text tower (never used; it only lets the random
model be saved and reloaded as an ordinary CLIP preset).
"""

from __future__ import annotations

from typing import Any

from tgmatl.config import RandomArchParams
from tgmatl.embedding.backbones.base import Encoder, WeightsError
from tgmatl.embedding.backbones.family import Family
from tgmatl.embedding.backbones.preprocessing import CLIP_MEAN, CLIP_STD


def encoder_from(model: Any, image_size: int, key: str, preset: str) -> Encoder:
    import keras_hub

    if isinstance(model, keras_hub.models.CLIPBackbone):
        vision, projection = model.vision_encoder, model.vision_projection.get_weights()[0]
    elif isinstance(model, keras_hub.models.CLIPVisionEncoder):
        vision, projection = model, None
    else:
        raise WeightsError(
            f"{key}: {preset!r} holds a {type(model).__name__}; family 'clip' needs a "
            "CLIPBackbone or CLIPVisionEncoder preset"
        )
    Family.check_fixed_size(int(vision.image_shape[0]), image_size, key, preset)
    return Encoder(backbone=vision, image_size=image_size, projection=projection, source=model)


class CLIP(Family):
    name = "clip"
    mean = CLIP_MEAN
    std = CLIP_STD
    has_projection = True

    @property
    def preset_names(self) -> tuple[str, ...]:
        import keras_hub

        return tuple(keras_hub.models.CLIPBackbone.presets)

    def random_encoder(self, arch: RandomArchParams, image_size: int) -> Encoder:
        import keras_hub

        vision = keras_hub.models.CLIPVisionEncoder(
            patch_size=arch.patch_size,
            hidden_dim=arch.hidden_dim,
            num_layers=arch.num_layers,
            num_heads=arch.num_heads,
            intermediate_dim=arch.mlp_dim,
            image_shape=(image_size, image_size, 3),
        )
        text = keras_hub.models.CLIPTextEncoder(
            vocabulary_size=8,
            embedding_dim=arch.hidden_dim,
            hidden_dim=arch.hidden_dim,
            num_layers=1,
            num_heads=arch.num_heads,
            intermediate_dim=arch.mlp_dim,
            max_sequence_length=4,
        )
        model = keras_hub.models.CLIPBackbone(
            vision_encoder=vision, text_encoder=text, projection_dim=arch.hidden_dim
        )
        return encoder_from(model, image_size, "random", "random")

    def keras_encoder(self, preset: str, image_size: int, key: str) -> Encoder:
        import keras_hub

        model = keras_hub.models.Backbone.from_preset(preset)
        return encoder_from(model, image_size, key, preset)
