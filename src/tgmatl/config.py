"""The sections of ``params.yaml`` as typed, frozen dataclasses.

One class per section; every field is required (defaults live in ``params.yaml`` alone, so there is
exactly one place to read them). :func:`tgmatl.params.read_section` builds and validates them.
Cross-field rules go into a ``validate(key)`` method raising :class:`ParamsError`; fields that mean
nothing for some values of others (a precomputed backbone's ``image_size``) are named by a
``not_applicable(raw)`` static method, must then be left out and read as None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from tgmatl.params import ParamsError, spec

GeometryFeature = Literal[
    "width", "height", "area", "squareness", "aspect", "log_aspect", "perimeter", "diagonal"
]
Setup = Literal["wtl", "cltl", "cltl_hard", "matl", "tg_matl", "matl_tuned", "matl_uw",
                "matl_gradnorm", "cmatl"]
# The report's fixed order: the paper's five, then the comparisons beyond the paper.
PAPER_SETUPS: tuple[str, ...] = ("wtl", "cltl", "cltl_hard", "matl", "tg_matl")
SETUPS: tuple[str, ...] = (*PAPER_SETUPS, "matl_tuned", "matl_uw", "matl_gradnorm", "cmatl")
# Setups that read sampling.* run in stage train_tg, the others in stage train; each stage writes
# its own folder results/<backbone>/<stage folder>/ (see results_file).
SAMPLING_SETUPS: tuple[str, ...] = ("tg_matl",)
SETUP_LABELS: dict[str, str] = {
    "wtl": "WTL", "cltl": "CLTL", "cltl_hard": "CLTL (Hard)", "matl": "MATL (0.5)",
    "tg_matl": "TG-MATL", "matl_tuned": "MATL (tuned λ)", "matl_uw": "MATL (uncertainty w.)",
    "matl_gradnorm": "MATL (GradNorm)", "cmatl": "CMATL (log-ratio)",
}
# Setups of the `train` matrix: TG-MATL runs in `train_tg` (it reads sampling.*) and always
# runs, since every comparison is made against it.
MatrixSetup = Literal["wtl", "cltl", "cltl_hard", "matl", "matl_tuned", "matl_uw",
                      "matl_gradnorm", "cmatl"]


# --- data -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DemoParams:
    # n_targets is the size knob: scenes follow it (round(n_targets / targets_per_scene))
    n_targets: int = spec(ge=1)
    targets_per_scene: float = spec(ge=1.0)
    width: int = spec(ge=320)
    height: int = spec(ge=320)
    classes: tuple[str, ...] = spec(min_len=2)
    class_weights: tuple[float, ...] = spec(gt=0.0)
    geotiff_fraction: float = spec(ge=0.0, le=1.0)
    thermal: Literal["file", "band", "none"] = spec()
    # share of scenes holding several species (the rest: single-species herds)
    mixed_scene_fraction: float = spec(ge=0.0, le=1.0)
    touching_fraction: float = spec(ge=0.0, le=1.0)
    occlusion_fraction: float = spec(ge=0.0, le=1.0)
    jpeg_quality: int = spec(ge=50, le=100)
    image_format: Literal["jpg", "png"] = spec(help="scenes not written as GeoTIFF")
    gsd_m: float = spec(gt=0.0, le=1.0, help="ground sample distance, metres per pixel")

    @property
    def n_scenes(self) -> int:
        return max(1, round(self.n_targets / self.targets_per_scene))

    def validate(self, key: str) -> None:
        if len(self.class_weights) != len(self.classes):
            raise ParamsError(
                f"{key}.class_weights: {len(self.class_weights)} weights for "
                f"{len(self.classes)} classes in {key}.classes"
            )
        # class names become folder names (case-insensitive file systems included)
        folded = [c.strip().lower() for c in self.classes]
        for c in self.classes:
            if not c.strip() or c != c.strip() or c.startswith(".") or any(
                ch in c for ch in '/\\:*?"<>|'
            ):
                raise ParamsError(f"{key}.classes: {c!r} is not usable as a folder name")
        if len(set(folded)) != len(folded):
            raise ParamsError(f"{key}.classes: duplicate class name in {list(self.classes)}")
        if self.thermal == "band" and self.image_format == "jpg" and self.geotiff_fraction < 1:
            raise ParamsError(
                f"{key}.thermal: 'band' adds a 4th band, which JPEG cannot hold; set "
                f"{key}.image_format: png or {key}.geotiff_fraction: 1"
            )


@dataclass(frozen=True)
class DataParams:
    root: str = spec()
    format: Literal["awir", "yolo", "voc", "coco"] = spec()
    ignore_classes: tuple[str, ...] = spec()
    on_error: Literal["stop", "skip"] = spec(help="skip: drop a bad scene or label, counted")


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
    """Architecture of a seeded random-init backbone (``weights: random``; ignored otherwise)."""

    patch_size: int = spec(ge=1)
    hidden_dim: int = spec(ge=1)
    num_layers: int = spec(ge=1)
    num_heads: int = spec(ge=1)
    mlp_dim: int = spec(ge=1)


# The keys of an image encoder; a precomputed backbone (stored vectors) leaves them out.
ENCODER_KEYS: tuple[str, ...] = ("image_size", "pooling", "projected", "random")
# family classical (hand-crafted descriptors, tgmatl.embedding.backbones.classical) takes
# family, image_size and components only: it has no weights, pooling, projection or architecture.
CLASSICAL_UNUSED: tuple[str, ...] = ("weights", "pooling", "projected", "random")


@dataclass(frozen=True)
class BackboneParams:
    """One backbone (``backbones.<name>``): a frozen image encoder
    (``tgmatl.embedding.backbones``), or with
    ``family: precomputed`` a file of stored embeddings (``tgmatl.embedding.precomputed``).

    An encoder needs every key. A precomputed backbone has ``family`` and ``weights`` (the
    ``.npy`` / ``.parquet`` file) only: the encoder keys (:data:`ENCODER_KEYS`) must be left out
    and read as None.
    """

    family: Literal["dinov2", "mae", "clip", "precomputed", "classical"] = spec()
    weights: str | None = spec(
        help="'random', a keras-hub preset name or kaggle:// / hf:// handle, a keras-hub preset "
        "folder, or a Hugging Face checkpoint folder; family precomputed: a .npy or .parquet "
        "file; family classical: none (left out)"
    )
    image_size: int | None = spec(ge=8)  # the encoder's input size (pixels, square)
    pooling: Literal["cls", "cls_mean"] | None = spec()  # cls_mean: CLS + patch mean
    projected: bool | None = spec()  # clip only: CLS through CLIP's image projection
    random: RandomArchParams | None = spec()
    # family classical only: principal axes each view's descriptor is reduced to
    components: int | None = spec(ge=1)

    @staticmethod
    def not_applicable(raw: Mapping) -> dict[str, str]:
        family = raw.get("family") if isinstance(raw, Mapping) else None
        if family == "classical":
            why = "family: classical (hand-crafted descriptors: takes image_size and components)"
            return {k: why for k in CLASSICAL_UNUSED}
        # components reduces hand-crafted descriptors; an encoder's vectors are used as they are
        out = {"components": f"family: {family} (components is for family classical only)"}
        if family == "precomputed":
            out.update({k: "family: precomputed (stored vectors, no encoder)"
                        for k in ENCODER_KEYS})
        return out

    def validate(self, key: str) -> None:
        if self.family == "classical":
            size = self.image_size
            if size is None:
                raise ParamsError(f"{key}.image_size: missing (required for family classical)")
            if size < 32 or size % 8:
                raise ParamsError(f"{key}.image_size: {size}; family classical needs a multiple "
                                  "of 8 (its 8 x 8 HOG cell grid), at least 32")
            if self.components is None:
                raise ParamsError(f"{key}.components: missing (required for family classical)")
            return
        if self.weights is None:
            raise ParamsError(f"{key}.weights: missing (required for family {self.family})")
        if not self.weights.strip():
            if self.family == "precomputed":
                raise ParamsError(f"{key}.weights: empty; family precomputed needs a .npy or "
                                  ".parquet file of embeddings")
            raise ParamsError(f"{key}.weights: empty; use 'random', a preset name or a folder")
        if self.family == "precomputed":
            return
        for name in ENCODER_KEYS:  # an explicit null would otherwise pass as "left out"
            if getattr(self, name) is None:
                raise ParamsError(f"{key}.{name}: missing (required for family {self.family})")
        if self.projected and self.family != "clip":
            raise ParamsError(
                f"{key}.projected: true is only defined for family clip (CLIP's image "
                f"projection); set it to false for family {self.family}"
            )
        if self.projected and self.pooling != "cls":
            raise ParamsError(
                f"{key}.pooling: CLIP's projection applies to the CLS token only; use "
                f"pooling: cls with projected: true, or projected: false"
            )
        if self.weights == "random":
            arch = self.random
            assert arch is not None and self.image_size is not None
            if self.image_size % arch.patch_size:
                raise ParamsError(
                    f"{key}.image_size: {self.image_size} is not a multiple of "
                    f"{key}.random.patch_size {arch.patch_size}"
                )
            if arch.hidden_dim % arch.num_heads:
                raise ParamsError(
                    f"{key}.random.hidden_dim: {arch.hidden_dim} is not divisible by "
                    f"{key}.random.num_heads {arch.num_heads}"
                )
            if self.family == "mae" and arch.hidden_dim % 4:
                raise ParamsError(
                    f"{key}.random.hidden_dim: MAE's sin-cos positions need a multiple of 4, "
                    f"got {arch.hidden_dim}"
                )


@dataclass(frozen=True)
class EmbedParams:
    backbones: tuple[str, ...] = spec(min_len=1)
    batch_size: int = spec(ge=1)
    precision: Literal["float32", "bfloat16"] = spec()
    bands: Literal["rgb", "thermal", "rgb+thermal"] = spec()
    resize: Literal["stretch", "crop", "pad"] = spec()
    row_group_size: int = spec(ge=1)
    # Where the encoder runs (tgmatl.embedding.extraction.resolve_devices): auto (every visible
    # GPU, else the
    # CPU) | cpu | all (every visible GPU) | a GPU count. Not a DVC dependency: it changes how
    # fast, not what (several GPUs give the one-GPU embeddings to 1e-5).
    devices: Literal["auto", "cpu", "all"] | int = spec(ge=1)


def results_file(results_dir, backbone: str, setup: str, suffix: str = ".json"):
    """``results/<backbone>/{train|tg}/<setup><suffix>``: where a setup's outputs live."""
    from pathlib import Path

    folder = "tg" if setup in SAMPLING_SETUPS else "train"
    return Path(results_dir) / backbone / folder / f"{setup}{suffix}"


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
    # scene: whole scenes go to the test split / one fold (no background shared across roles);
    # none: samples are split one by one (the paper's protocol)
    group: Literal["scene", "none"] = spec()


@dataclass(frozen=True)
class MarginParams:
    """``eval.margin.<metric>``: how small a difference counts as "slight" for a finding that
    claims one (an equivalence test, TOST: the difference lies within ±margin)."""

    accuracy: float = spec(gt=0.0, lt=1.0)
    r2: float = spec(gt=0.0, lt=1.0)
    class_map_at_r: float = spec(gt=0.0, lt=1.0)
    box_map_at_r: float = spec(gt=0.0, lt=1.0)


@dataclass(frozen=True)
class EvalParams:
    """Repeated evaluation (``eval.*``): ``repeats`` redraws of the folds (and, with
    ``resplit``, of the held-out test split); every setup shares the same (repeat, fold) units.
    ``alpha``: level of the paired tests and of their (1 - alpha) confidence intervals.
    ``retrieval_queries``: at most this many test samples of a unit serve as retrieval queries
    (drawn per unit, the same for every setup; every test sample stays a reference), so
    retrieval costs O(queries · n) instead of O(n²) on large surveys. ``margin``: per metric, the
    largest difference a claim of a "slight" difference allows (:class:`MarginParams`)."""

    repeats: int = spec(ge=1)
    resplit: bool = spec()
    alpha: float = spec(gt=0.0, lt=0.5)
    retrieval_queries: int = spec(ge=2)
    margin: MarginParams = spec()


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
    """``n_neighbors``: k of the k-NN MI estimator. ``score``: the relevance TG-MATL ranks by,
    ``eq5`` (the paper's ``Σ_k I_k·x̃_ik``) | ``pointwise`` (each training sample's own k-NN MI
    term between its joint geometry and its class); see :mod:`tgmatl.method.mi`."""

    n_neighbors: int = spec(ge=1)
    score: Literal["eq5", "pointwise"] = spec()


@dataclass(frozen=True)
class SamplingParams:
    """Task-guided selection (METHOD.md Eqs. 6-13, :mod:`tgmatl.method.selection`).

    ``top_pct`` in (0, 1], ``random_pct`` in [0, 1]. ``top_pct + random_pct > 1`` is allowed: the
    random part is capped by what is left of each class (``n_rand <= |R_c|``), so every sample of
    the class is selected. ``random``: ``random`` draws (Eq. 11) | ``next`` ranks by score
    (authors' code); ``scope``: one mask per fold (``dataset``) | per mini-batch (``batch``,
    authors' code, applied by the training code); ``negatives``: ``all`` | ``selected``.
    """

    top_pct: float = spec(gt=0.0, le=1.0)
    random_pct: float = spec(ge=0.0, le=1.0)
    random: Literal["random", "next"] = spec()
    scope: Literal["dataset", "batch"] = spec()
    negatives: Literal["all", "selected"] = spec()


# --- training ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainParams:
    """Projection training. ``setups``: the setups of the ``train`` stage matrix besides
    TG-MATL (which always runs); ``box_weight_grid``: the λ that ``matl_tuned`` chooses from on
    each unit's validation samples; ``uw_lr``: Adam's step for ``matl_uw``'s log-variances
    (at the projection's ``lr`` they hardly move); ``gradnorm_*``: ``matl_gradnorm``."""

    setups: tuple[MatrixSetup, ...] = spec(min_len=1)
    projection: tuple[int, ...] = spec(ge=1, min_len=1)
    lr: float = spec(gt=0.0)
    batch_size: int = spec(ge=2)
    margin: float = spec(ge=0.0)
    box_weight: float = spec(ge=0.0, le=1.0)
    epochs: int = spec(ge=1)
    patience: int = spec(ge=1)
    min_delta: float = spec(ge=0.0)  # an improvement of the criterion must exceed it
    # what picks the projection's best epoch on the validation samples: hinge_all (the triplet
    # hinge averaged over *all* valid triplets) | loss (the training loss itself)
    val_criterion: Literal["hinge_all", "loss"] = spec()
    box_weight_grid: tuple[float, ...] = spec(ge=0.0, le=1.0, min_len=1)
    uw_lr: float = spec(gt=0.0)
    # GradNorm (multi-task weighting of L_cls, L_box): the asymmetry alpha of the target gradient
    # norms mean(G)·r_t^alpha, and the gradient-descent step size of the task weights
    gradnorm_alpha: float = spec(gt=0.0)
    gradnorm_lr: float = spec(gt=0.0)
    # seed twins: every unit trains this many times with independent training randomness
    # (projection start, batches, batch-scope selection, probe inner CV); twin 0 is the unit's
    # single run. The test split and retrieval queries stay the same (paired).
    twins: int = spec(ge=1, le=100)
    # memory budget (MB) of one chunk of units trained together (tgmatl.training.batched): how
    # fast, not what; a unit needing more is an error naming this key
    unit_chunk_mb: float = spec(gt=0.0)

    def validate(self, key: str) -> None:
        if len(set(self.setups)) != len(self.setups):
            raise ParamsError(f"{key}.setups: duplicate setup in {list(self.setups)}")
        if len(set(self.box_weight_grid)) != len(self.box_weight_grid):
            raise ParamsError(f"{key}.box_weight_grid: duplicate value in "
                              f"{list(self.box_weight_grid)}")


@dataclass(frozen=True)
class HeadsParams:
    """Task heads. ``kind: probe`` (default): scikit-learn logistic / ridge regression on the
    standardised embedding, L2 strength chosen from ``l2_grid`` by ``inner_folds``-fold CV on
    the fold's training samples; ``mlp``: the paper's Adam-trained heads (``hidden``, ``lr``,
    ``batch_size``, ``epochs``, ``patience``), early-stopped on the validation samples."""

    kind: Literal["probe", "mlp"] = spec()
    l2_grid: tuple[float, ...] = spec(gt=0.0, min_len=1)
    inner_folds: int = spec(ge=2)
    hidden: int = spec(ge=0)
    lr: float = spec(gt=0.0)
    batch_size: int = spec(ge=1)
    epochs: int = spec(ge=1)
    patience: int = spec(ge=1)
