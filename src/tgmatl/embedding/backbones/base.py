"""What every encoder family provides, and the pooling head shared by all of them.

A family turns a weights source into an *encoder*: a keras-hub backbone mapping preprocessed images
``(B, S, S, 3)`` to a token sequence ``(B, 1 + R + P, D)`` (CLS, R register tokens, P patches),
final norm applied. :func:`build_embedder_model` puts the pooling on top and returns the frozen
model the extractor runs: preprocessed float32 images in, one float32 vector per image out.

Pooling (``backbones.<name>.pooling``):
- ``cls``: the CLS token after the final norm (DINOv2's and CLIP's pooled output), width D.
- ``cls_mean``: the CLS token *concatenated* with the mean of the patch tokens (register tokens
  excluded), width 2D: the feature DINOv2's own linear probes use.
- CLIP with ``projected: true``: CLIP's image embedding, the CLS token through CLIP's learnt
  projection (width = the projection size); only defined for ``cls``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from tgmatl.embedding.backbones.weights import WeightsError  # noqa: F401 - re-exported here


@dataclass
class Encoder:
    """A loaded encoder, float32, before pooling."""

    backbone: keras.Model
    image_size: int
    num_register_tokens: int = 0
    projection: np.ndarray | None = None  # CLIP's image projection kernel (D, P)
    dict_input: bool = True  # keras-hub backbones taking {"images": x} rather than x
    source: keras.Model | None = None  # the whole loaded keras-hub model, when larger (CLIP)

    @property
    def preset_model(self) -> keras.Model:
        """The keras-hub model to ``save_to_preset`` so that loading it gives this encoder."""
        return self.source if self.source is not None else self.backbone


def cast_backbone(backbone: keras.Model, precision: str) -> keras.Model:
    """The same backbone computing in ``precision``; weights copied (kept float32 in memory).

    bfloat16 uses keras' ``mixed_bfloat16`` policy: matmuls in bf16, variables, softmax and layer
    norms in float32. (Pure ``bfloat16`` variables measured slower here on CPU.)
    """
    if precision == "float32":
        return backbone
    if precision != "bfloat16":
        raise ValueError(f"unknown precision {precision!r}")
    config = {**backbone.get_config(), "dtype": "mixed_bfloat16"}
    clone = type(backbone).from_config(config)
    clone.set_weights(backbone.get_weights())
    return clone


def build_embedder_model(
    encoder: Encoder, pooling: str, projected: bool, precision: str
) -> keras.Model:
    """Frozen Keras model: preprocessed images ``(B, S, S, 3)`` float32 -> ``(B, dim)`` float32.

    ``encoder.backbone`` must already compute in ``precision`` (see :func:`cast_backbone`).
    """
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    backbone = encoder.backbone
    if backbone.dtype_policy.name != policy:
        raise ValueError(f"encoder computes in {backbone.dtype_policy.name}, not {policy}")
    backbone.trainable = False
    size = encoder.image_size
    images = keras.Input((size, size, 3), dtype="float32", name="images")
    tokens = backbone({"images": images} if encoder.dict_input else images)
    cls = tokens[:, 0, :]
    if pooling == "cls_mean":
        patches = tokens[:, 1 + encoder.num_register_tokens :, :]
        pooled: Any = keras.ops.concatenate([cls, keras.ops.mean(patches, axis=1)], axis=-1)
    elif pooling == "cls":
        pooled = cls
    else:
        raise ValueError(f"unknown pooling {pooling!r}")
    if projected:
        if encoder.projection is None:
            raise ValueError("projected: true needs an encoder with a projection")
        dense = keras.layers.Dense(
            encoder.projection.shape[1], use_bias=False, dtype=policy, name="projection"
        )
        pooled = dense(pooled)
        dense.set_weights([encoder.projection])
        dense.trainable = False
    out = keras.ops.cast(pooled, "float32")
    model = keras.Model(images, out, name="embedder")
    model.trainable = False
    return model


def sincos_2d(grid: int, dim: int) -> np.ndarray:
    """MAE's fixed position embedding, ``(1 + grid**2, dim)``; row 0 (CLS) is zeros.

    Layout as in MAE's released code and weights: ``[sin(c) | cos(c) | sin(r) | cos(r)]`` with c
    the patch column and r its row (the original names are swapped; pretrained weights rely on it).
    """
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    out_c = cols.reshape(-1, 1) * omega
    out_r = rows.reshape(-1, 1) * omega
    emb = np.concatenate([np.sin(out_c), np.cos(out_c), np.sin(out_r), np.cos(out_r)], axis=1)
    return np.concatenate([np.zeros((1, dim)), emb]).astype(np.float32)
