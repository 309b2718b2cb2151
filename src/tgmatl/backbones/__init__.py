"""Frozen ViT encoders (DINOv2, MAE, CLIP) behind one registry; see :mod:`.registry`."""

from tgmatl.backbones.base import Encoder, WeightsError
from tgmatl.backbones.registry import FAMILIES, Embedder, get_family, load_embedder, load_encoder

__all__ = [
    "FAMILIES",
    "Embedder",
    "Encoder",
    "WeightsError",
    "get_family",
    "load_embedder",
    "load_encoder",
]
