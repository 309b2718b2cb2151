"""The registry of encoder families and the one entry point: :func:`load_embedder`.

``load_embedder(params, name, seed, precision)`` reads ``backbones.<name>`` (a
:class:`~tgmatl.config.BackboneParams`) and returns an :class:`Embedder`: a frozen Keras model
mapping **preprocessed** float32 images ``(B, S, S, 3)`` (see :mod:`.preprocessing`; the
extractor in :mod:`tgmatl.embedding.extraction` does this in ``tf.data``) to float32 vectors ``(B,
dim)``, plus
what is needed to preprocess for it and to label its output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import keras

from tgmatl.config import BackboneParams
from tgmatl.embedding.backbones.base import (
    Encoder,
    WeightsError,
    build_embedder_model,
    cast_backbone,
)
from tgmatl.embedding.backbones.clip import CLIP
from tgmatl.embedding.backbones.dinov2 import DINOv2
from tgmatl.embedding.backbones.family import Family
from tgmatl.embedding.backbones.mae import MAE
from tgmatl.embedding.backbones.weights import WeightsSource, fetch_remote_config, resolve
from tgmatl.params import ParamsError

FAMILIES: dict[str, Family] = {f.name: f for f in (DINOv2(), MAE(), CLIP())}
# Families that run no Keras encoder, and the module stage embed hands them to instead.
NON_ENCODER_FAMILIES: dict[str, str] = {
    "precomputed": "tgmatl.embedding.precomputed (stored vectors)",
    "classical": "tgmatl.embedding.backbones.classical (hand-crafted descriptors, not a ViT)",
}


def get_family(family: str, key: str = "family") -> Family:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ParamsError(
            f"{key}: unknown backbone family {family!r}; known: {', '.join(FAMILIES)}"
        ) from None


@dataclass
class Embedder:
    """A frozen image -> vector model and what it expects."""

    name: str
    family: Family
    model: keras.Model
    image_size: int
    dim: int
    untrained: bool
    encoder: Encoder
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def mean(self) -> tuple[float, float, float]:
        return self.family.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.family.std


def load_encoder(p: BackboneParams, key: str, seed: int) -> tuple[Encoder, WeightsSource]:
    """Build or load the float32 encoder that ``p`` (found at ``key``) describes."""
    if p.family in NON_ENCODER_FAMILIES:
        raise ParamsError(
            f"{key}.family: {p.family} has no encoder to load; stage embed runs "
            f"{NON_ENCODER_FAMILIES[p.family]}"
        )
    family = get_family(p.family, f"{key}.family")
    wkey = f"{key}.weights"
    assert p.weights is not None  # validated: only non-encoder families leave it out
    source = resolve(p.weights, wkey, family.preset_names)
    if source.kind == "random":
        keras.utils.set_random_seed(seed)
        return family.random_encoder(p.random, p.image_size), source
    config = source.config
    if source.kind == "remote":
        config = fetch_remote_config(source, wkey)
    assert config is not None
    try:
        if "registered_name" in config:
            encoder = family.keras_encoder(source.location, p.image_size, wkey)
        elif "model_type" in config:
            encoder = family.hf_encoder(source.location, config, p.image_size, wkey)
        else:
            raise WeightsError(f"{wkey}: {source.location!r} has an unrecognised config.json")
    except WeightsError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # keras-hub's own errors (wrong class in a preset, a failed download, shape mismatch):
        # one line naming the key rather than a traceback deep in the loader.
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise WeightsError(f"{wkey}: cannot load {source.location!r}: {reason}") from exc
    return encoder, source


def load_embedder(p: BackboneParams, name: str, seed: int, precision: str = "float32") -> Embedder:
    """The frozen embedder for ``backbones.<name>`` (``p``), computing in ``precision``."""
    key = f"backbones.{name}"
    encoder, source = load_encoder(p, key, seed)
    if precision != "float32":
        # Swap in the cast copy so the float32 original can be freed once loading is done.
        encoder = replace(encoder, backbone=cast_backbone(encoder.backbone, precision), source=None)
    model = build_embedder_model(encoder, p.pooling, p.projected, precision)
    dim = int(model.output.shape[-1])
    untrained = source.kind == "random"
    metadata = {
        "backbone": name,
        "family": p.family,
        "weights": p.weights,
        "weights_kind": source.describe,
        "untrained": json.dumps(untrained),
        "image_size": str(p.image_size),
        "pooling": p.pooling,
        "projected": json.dumps(p.projected),
        "precision": precision,
        "dim": str(dim),
        "mean": json.dumps(list(get_family(p.family).mean)),
        "std": json.dumps(list(get_family(p.family).std)),
        **_versions(),
    }
    if untrained:
        metadata["seed"] = str(seed)
        metadata["random_arch"] = json.dumps(vars(p.random), sort_keys=True)
    return Embedder(
        name=name,
        family=get_family(p.family),
        model=model,
        image_size=p.image_size,
        dim=dim,
        untrained=untrained,
        encoder=encoder,
        metadata=metadata,
    )


def _versions() -> dict[str, Any]:
    import keras_hub
    import tensorflow as tf

    return {
        "keras_hub_version": keras_hub.__version__,
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }
