"""The sections of ``params.yaml`` as typed, frozen dataclasses.

One class per section; every field is required (defaults live in ``params.yaml`` alone, so there is
exactly one place to read them). :func:`tgmatl.params.read_section` builds and validates them.
Cross-field rules go into a ``validate(key)`` method raising :class:`ParamsError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tgmatl.params import ParamsError, spec

GeometryFeature = Literal[
    "width", "height", "area", "squareness", "aspect", "log_aspect", "perimeter", "diagonal"
]
Setup = Literal["wtl", "cltl", "cltl_hard", "matl", "tg_matl"]
SETUPS: tuple[str, ...] = ("wtl", "cltl", "cltl_hard", "matl", "tg_matl")


# --- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoParams:
    n_scenes: int = spec(ge=1)
    width: int = spec(ge=320)
    height: int = spec(ge=320)
    n_targets: int = spec(ge=1)
    classes: tuple[str, ...] = spec(min_len=2)
    class_weights: tuple[float, ...] = spec(gt=0.0)
    geotiff_fraction: float = spec(ge=0.0, le=1.0)
    thermal: Literal["file", "band", "none"] = spec()
    touching_fraction: float = spec(ge=0.0, le=1.0)
    occlusion_fraction: float = spec(ge=0.0, le=1.0)
    jpeg_quality: int = spec(ge=50, le=100)

    def validate(self, key: str) -> None:
        if len(self.class_weights) != len(self.classes):
            raise ParamsError(
                f"{key}.class_weights: {len(self.class_weights)} weights for "
                f"{len(self.classes)} classes in {key}.classes"
            )


@dataclass(frozen=True)
class DataParams:
    root: str = spec()
    format: Literal["awir", "yolo", "voc", "coco"] = spec()
    ignore_classes: tuple[str, ...] = spec()


@dataclass(frozen=True)
class TileParams:
    size: int = spec(ge=16)
    stride: int = spec(ge=1)
    edge: Literal["pad", "shift", "drop"] = spec()
    min_visible: float = spec(gt=0.0, le=1.0)


@dataclass(frozen=True)
class IsolateParams:
    policy: Literal["tile", "recentre"] = spec()
    min_box_px: int = spec(ge=1)


# --- embeddings -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomArchParams:
    """Architecture of a seeded random-init backbone (``weights: random``)."""

    patch_size: int = spec(ge=1)
    hidden_dim: int = spec(ge=1)
    num_layers: int = spec(ge=1)
    num_heads: int = spec(ge=1)
    mlp_dim: int = spec(ge=1)


@dataclass(frozen=True)
class BackboneParams:
    family: Literal["dinov2", "mae", "clip"] = spec()
    weights: str = spec(help="'random', a keras-hub preset name, or a local folder")
    image_size: int = spec(ge=8)
    pooling: Literal["cls", "cls_mean"] = spec()
    projected: bool = spec()
    random: RandomArchParams = spec()


@dataclass(frozen=True)
class EmbedParams:
    backbones: tuple[str, ...] = spec(min_len=1)
    batch_size: int = spec(ge=1)
    precision: Literal["float32", "bfloat16"] = spec()
    bands: Literal["rgb", "thermal", "rgb+thermal"] = spec()
    resize: Literal["stretch", "crop", "pad"] = spec()
    row_group_size: int = spec(ge=1)


def backbone_section(params: Mapping, name: str) -> BackboneParams:
    from tgmatl.params import read_section

    if name not in params.get("backbones", {}):
        raise ParamsError(f"backbones.{name}: no such backbone configured in params")
    return read_section(BackboneParams, params, f"backbones.{name}")


# --- method -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitParams:
    test_size: float = spec(gt=0.0, lt=1.0)
    folds: int = spec(ge=2)
    geometry_bins: int = spec(ge=1)


@dataclass(frozen=True)
class BoxLabelParams:
    method: Literal["kmeans", "quantile"] = spec()
    k: int = spec(ge=2)


@dataclass(frozen=True)
class GeometryParams:
    features: tuple[GeometryFeature, ...] = spec(min_len=1)
    box_label: BoxLabelParams = spec()

    def validate(self, key: str) -> None:
        if len(set(self.features)) != len(self.features):
            raise ParamsError(f"{key}.features: duplicate feature in {list(self.features)}")


@dataclass(frozen=True)
class MIParams:
    n_neighbors: int = spec(ge=1)


@dataclass(frozen=True)
class SamplingParams:
    top_pct: float = spec(gt=0.0, le=1.0)
    random_pct: float = spec(ge=0.0, le=1.0)
    random: Literal["random", "next"] = spec()
    scope: Literal["dataset", "batch"] = spec()
    negatives: Literal["all", "selected"] = spec()


# --- training ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainParams:
    projection: tuple[int, ...] = spec(ge=1, min_len=1)
    lr: float = spec(gt=0.0)
    batch_size: int = spec(ge=2)
    margin: float = spec(ge=0.0)
    box_weight: float = spec(ge=0.0, le=1.0)
    epochs: int = spec(ge=1)
    patience: int = spec(ge=1)


@dataclass(frozen=True)
class HeadsParams:
    hidden: int = spec(ge=0)
    lr: float = spec(gt=0.0)
    batch_size: int = spec(ge=1)
    epochs: int = spec(ge=1)
    patience: int = spec(ge=1)
