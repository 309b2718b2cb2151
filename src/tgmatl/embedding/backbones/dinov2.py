"""DINOv2: keras-hub ``DINOV2Backbone`` (presets ``dinov2_small`` ... ``dinov2_giant``, with or
without registers), a keras-hub preset folder, or a Hugging Face ``dinov2`` /
``dinov2_with_registers`` checkpoint (keras-hub converts it).

Any ``image_size`` that is a multiple of the patch size (14) works (the paper's: 224); the
position embeddings, trained at 518 px, are interpolated to it. keras-hub interpolates plain
DINOv2 with TensorFlow's bicubic (Keys' kernel, a = -0.5) where DINOv2 and transformers use
PyTorch's (a = -0.75), which moved the tiny fixture's outputs by 7e-4 relative; the positions are
recomputed here the PyTorch way (:func:`torch_bicubic`), which matches transformers to 1e-7.
Checkpoints with registers interpolate with antialiasing, where both libraries already agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tgmatl.config import RandomArchParams
from tgmatl.embedding.backbones.base import Encoder, WeightsError
from tgmatl.embedding.backbones.family import Family
from tgmatl.embedding.backbones.preprocessing import IMAGENET_MEAN, IMAGENET_STD


def _cubic(x: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys' cubic convolution kernel (PyTorch's bicubic uses a = -0.75)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _resize_axis(x: np.ndarray, out: int, axis: int) -> np.ndarray:
    n = x.shape[axis]
    src = (np.arange(out) + 0.5) * (n / out) - 0.5  # align_corners=False, no clamping (cubic)
    base = np.floor(src).astype(int)
    result = np.zeros(x.shape[:axis] + (out,) + x.shape[axis + 1 :])
    shape = [1] * x.ndim
    shape[axis] = out
    for k in (-1, 0, 1, 2):
        weight = _cubic(src - (base + k)).reshape(shape)
        result += np.take(x, np.clip(base + k, 0, n - 1), axis=axis) * weight
    return result


def torch_bicubic(grid: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` of (H, W, C)."""
    x = grid.astype(np.float64)
    return _resize_axis(_resize_axis(x, size[0], 0), size[1], 1).astype(grid.dtype)


def fix_position_interpolation(backbone: Any) -> None:
    """Recompute keras-hub's interpolated DINOv2 positions with PyTorch's bicubic."""
    emb = backbone.embeddings
    if emb.antialias_in_interpolation or emb.position_embedding_shape == emb.image_shape:
        return
    table = np.asarray(emb.position_embeddings.numpy())[0]  # (1 + N, D)
    side = int(round((table.shape[0] - 1) ** 0.5))
    grid = table[1:].reshape(side, side, -1)
    new = (emb.image_shape[0] // emb.patch_size, emb.image_shape[1] // emb.patch_size)
    patches = torch_bicubic(grid, new).reshape(-1, table.shape[1])
    emb.interpolated_position_embeddings.assign(np.concatenate([table[:1], patches])[None])


def _encoder(backbone: Any, image_size: int) -> Encoder:
    fix_position_interpolation(backbone)
    return Encoder(
        backbone=backbone,
        image_size=image_size,
        num_register_tokens=int(backbone.num_register_tokens),
    )


class DINOv2(Family):
    name = "dinov2"
    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    hf_model_types = ("dinov2", "dinov2_with_registers")

    @property
    def preset_names(self) -> tuple[str, ...]:
        import keras_hub

        return tuple(keras_hub.models.DINOV2Backbone.presets)

    def random_encoder(self, arch: RandomArchParams, image_size: int) -> Encoder:
        import keras_hub

        backbone = keras_hub.models.DINOV2Backbone(
            patch_size=arch.patch_size,
            num_layers=arch.num_layers,
            hidden_dim=arch.hidden_dim,
            num_heads=arch.num_heads,
            intermediate_dim=arch.mlp_dim,
            image_shape=(image_size, image_size, 3),
            position_embedding_shape=(image_size, image_size),
        )
        return _encoder(backbone, image_size)

    def keras_encoder(self, preset: str, image_size: int, key: str) -> Encoder:
        import keras_hub

        backbone = keras_hub.models.DINOV2Backbone.from_preset(
            preset, image_shape=(image_size, image_size, 3)
        )
        self.check_patch_multiple(backbone.patch_size, image_size, key, preset)
        return _encoder(backbone, image_size)

    def hf_encoder(self, preset: str, config: dict[str, Any], image_size: int, key: str) -> Encoder:
        import keras_hub

        self.check_model_type(config, key, preset)
        # keras-hub's DINOv2 hard-codes these; a checkpoint that differs would load silently wrong.
        eps = config.get("layer_norm_eps", 1e-6)
        act = config.get("hidden_act", "gelu")
        if abs(eps - 1e-6) > 1e-12 or act != "gelu" or not config.get("qkv_bias", True):
            raise WeightsError(
                f"{key}: {preset!r} has layer_norm_eps={eps}, hidden_act={act!r}, "
                f"qkv_bias={config.get('qkv_bias', True)}; keras-hub's DINOv2 supports only "
                "1e-6, 'gelu' and qkv_bias=true"
            )
        self.check_patch_multiple(config["patch_size"], image_size, key, preset)
        backbone = keras_hub.models.DINOV2Backbone.from_preset(
            preset, image_shape=(image_size, image_size, 3)
        )
        return _encoder(backbone, image_size)
