"""MAE: a masked-autoencoder-pretrained ViT encoder in keras-hub's ``ViTBackbone``.

keras-hub has no MAE model, but MAE's encoder *is* a plain ViT (pre-norm blocks, CLS token,
final layer norm); only its position embedding is a fixed 2-D sin-cos table instead of a learnt
one, and that is just a weight. So:

- a Hugging Face ``ViTMAEForPreTraining`` checkpoint (``facebook/vit-mae-base``; keys ``vit.*``
  plus an unused ``decoder.*``) or a bare ``ViTMAEModel`` (keys without the ``vit.`` prefix), or a
  plain HF ``vit`` checkpoint, is read with keras-hub's ViT converter: the config is read as a ViT
  one and ``layer_norm_epsilon`` is taken from the checkpoint's ``layer_norm_eps`` (keras-hub's
  converter would leave its own 1e-6; MAE uses 1e-12);
- a keras-hub ``ViTBackbone`` preset folder (e.g. one saved after such a conversion) or a built-in
  ``vit_*`` preset name loads directly (those built-in presets are supervised ViTs, not MAE);
- ``random`` builds a ViT with MAE's fixed sin-cos positions and a zero CLS position.

MAE's encoder sees all patches here (no masking at inference). Its positions are not
interpolated: ``image_size`` must equal the checkpoint's (224 for ``vit-mae-base``).
MAE trains no pooling on top of the encoder; ``cls`` and ``cls_mean`` are both offered.
"""

from __future__ import annotations

from typing import Any

from tgmatl.config import RandomArchParams
from tgmatl.embedding.backbones.base import Encoder, WeightsError, sincos_2d
from tgmatl.embedding.backbones.family import Family
from tgmatl.embedding.backbones.hf import HFWeights
from tgmatl.embedding.backbones.preprocessing import IMAGENET_MEAN, IMAGENET_STD

MAE_LAYER_NORM_EPS = 1e-12  # transformers' ViTMAEConfig default, as in facebook/vit-mae-*


def _embedding_layer(backbone: Any) -> Any:
    return backbone.get_layer("vit_patching_and_embedding")


class MAE(Family):
    name = "mae"
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    hf_model_types = ("vit_mae", "vit")

    @property
    def preset_names(self) -> tuple[str, ...]:
        import keras_hub

        return tuple(keras_hub.models.ViTBackbone.presets)

    def random_encoder(self, arch: RandomArchParams, image_size: int) -> Encoder:
        import keras_hub

        backbone = keras_hub.models.ViTBackbone(
            image_shape=(image_size, image_size, 3),
            patch_size=arch.patch_size,
            num_layers=arch.num_layers,
            num_heads=arch.num_heads,
            hidden_dim=arch.hidden_dim,
            mlp_dim=arch.mlp_dim,
            layer_norm_epsilon=MAE_LAYER_NORM_EPS,
        )
        grid = image_size // arch.patch_size
        _embedding_layer(backbone).position_embedding.embeddings.assign(
            sincos_2d(grid, arch.hidden_dim)
        )
        return Encoder(backbone=backbone, image_size=image_size, dict_input=False)

    def keras_encoder(self, preset: str, image_size: int, key: str) -> Encoder:
        import keras_hub

        backbone = keras_hub.models.ViTBackbone.from_preset(preset)
        self.check_fixed_size(int(backbone.image_shape[0]), image_size, key, preset)
        return Encoder(backbone=backbone, image_size=image_size, dict_input=False)

    def hf_encoder(self, preset: str, config: dict[str, Any], image_size: int, key: str) -> Encoder:
        import keras_hub
        from keras_hub.src.utils.transformers import convert_vit

        self.check_model_type(config, key, preset)
        if config.get("hidden_act", "gelu") != "gelu":
            raise WeightsError(
                f"{key}: {preset!r} uses hidden_act={config['hidden_act']!r}; the ViT encoder "
                "supports 'gelu' only"
            )
        self.check_fixed_size(int(config["image_size"]), image_size, key, preset)
        vit_config = {**config, "model_type": "vit", "qkv_bias": config.get("qkv_bias", True)}
        kwargs = convert_vit.convert_backbone_config(vit_config)
        kwargs["layer_norm_epsilon"] = float(config.get("layer_norm_eps", MAE_LAYER_NORM_EPS))
        backbone = keras_hub.models.ViTBackbone(**kwargs)
        with HFWeights(preset) as weights:
            try:
                convert_vit.convert_weights(backbone, weights, vit_config)
            except KeyError as exc:
                raise WeightsError(f"{key}: {preset!r} is not a ViT/MAE encoder: {exc}") from None
        return Encoder(backbone=backbone, image_size=image_size, dict_input=False)
