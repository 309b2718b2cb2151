"""Frozen ViT encoders (DINOv2, MAE, CLIP) behind one registry; see :mod:`.registry`.

The names below are imported on first use, so that ``tgmatl.embedding.backbones.weights`` (no
Keras) can be
used without starting TensorFlow.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "Encoder": "base",
    "WeightsError": "weights",
    "FAMILIES": "registry",
    "Embedder": "registry",
    "get_family": "registry",
    "load_embedder": "registry",
    "load_encoder": "registry",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
