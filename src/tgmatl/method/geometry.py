"""Box geometry (METHOD.md "Box geometry"): features, min-max normalisation, discrete box labels.

Everything that is *fitted* (feature min/max, k-means centres, quantile edges) is fitted on a
fold's training samples only and then applied to the others: validation and test boxes are
normalised with the training min/max and clipped to [0, 1].

Choices where METHOD.md is silent:

- A feature that is constant on the training samples (``max == min``) carries no information; it
  normalises to 0 for every sample (training or not), so it adds nothing to a score.
- k-means labels are made canonical: clusters are renumbered by the norm of their centre
  (ties: lexicographic centre coordinates), so label 0 is always the cluster nearest the origin
  (the smallest / squarest boxes) whatever order k-means found them in. ``n_init`` is fixed (10).
- ``quantile`` labels: the k quantile bins (edges at the training quantiles j/k) of the *mean of
  the normalised features*, a 1-D summary that weighs every configured feature alike (all are in
  [0, 1]); a value on an edge goes to the upper bin. Tied values can leave a bin empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tgmatl.errors import InputError

FEATURES: tuple[str, ...] = (
    "width",
    "height",
    "area",
    "squareness",
    "aspect",
    "log_aspect",
    "perimeter",
    "diagonal",
)
KMEANS_N_INIT = 10


def box_features(boxes: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """(N, K) float64 raw features ``names`` from the columns ``xmin, xmax, ymin, ymax``."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ValueError(f"unknown geometry feature(s) {unknown}; known: {', '.join(FEATURES)}")
    w = boxes["xmax"].to_numpy(np.float64) - boxes["xmin"].to_numpy(np.float64)
    h = boxes["ymax"].to_numpy(np.float64) - boxes["ymin"].to_numpy(np.float64)
    if not (np.all(w > 0) and np.all(h > 0)):
        raise ValueError("boxes must have xmax > xmin and ymax > ymin")
    table = {
        "width": lambda: w,
        "height": lambda: h,
        "area": lambda: w * h,
        # symmetric: 0 for a square, toward 1 however the box is elongated
        "squareness": lambda: 1.0 - np.minimum(w / h, h / w),
        "aspect": lambda: w / h,
        "log_aspect": lambda: np.log(w / h),
        "perimeter": lambda: 2.0 * (w + h),
        "diagonal": lambda: np.hypot(w, h),
    }
    return np.column_stack([table[n]() for n in names]) if names else np.empty((len(w), 0))


@dataclass(frozen=True)
class MinMax:
    """Per-feature min and max of the training samples."""

    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> MinMax:
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError("min-max needs a non-empty (N, K) array")
        return cls(lo=x.min(axis=0), hi=x.max(axis=0))

    @property
    def constant(self) -> np.ndarray:
        """[K] bool: features with one value on the training samples."""
        return self.hi <= self.lo

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``(x - lo) / (hi - lo)`` clipped to [0, 1]; constant features give 0."""
        x = np.asarray(x, np.float64)
        span = np.where(self.constant, 1.0, self.hi - self.lo)
        out = np.clip((x - self.lo) / span, 0.0, 1.0)
        out[:, self.constant] = 0.0
        return out


@dataclass(frozen=True)
class BoxLabeler:
    """Discrete box label ``z`` from normalised features: k-means centres or quantile edges."""

    method: str
    centres: np.ndarray | None = None  # (k, K), canonical order (kmeans)
    edges: np.ndarray | None = None  # (k-1,) on the mean normalised feature (quantile)

    @classmethod
    def fit(cls, xn: np.ndarray, method: str, k: int, seed: int) -> BoxLabeler:
        xn = np.asarray(xn, np.float64)
        if method == "kmeans":
            return cls(method, centres=_kmeans_centres(xn, k, seed))
        if method == "quantile":
            if xn.shape[0] == 0:
                raise ValueError("quantile box labels need at least one training sample")
            edges = np.quantile(xn.mean(axis=1), np.arange(1, k) / k)
            return cls(method, edges=edges)
        raise ValueError(f"box label method {method!r} is not one of kmeans|quantile")

    @property
    def k(self) -> int:
        return len(self.centres) if self.centres is not None else len(self.edges) + 1

    def predict(self, xn: np.ndarray) -> np.ndarray:
        """[N] int32 labels in 0..k-1."""
        xn = np.asarray(xn, np.float64)
        if self.method == "kmeans":
            d2 = ((xn[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1)
            return np.argmin(d2, axis=1).astype(np.int32)  # ties: lower (canonical) label
        return np.searchsorted(self.edges, xn.mean(axis=1), side="right").astype(np.int32)


def _kmeans_centres(xn: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    distinct = len(np.unique(xn, axis=0)) if xn.size else 0
    if distinct < k:
        raise InputError(
            f"geometry.box_label.k={k} but the training samples hold only {distinct} distinct "
            "box(es): lower k or use more samples"
        )
    km = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(xn)
    centres = km.cluster_centers_
    # canonical order: by centre norm, ties by coordinates (lexsort's last key is the primary)
    order = np.lexsort((*centres.T[::-1], np.linalg.norm(centres, axis=1)))
    return centres[order]


@dataclass(frozen=True)
class FittedGeometry:
    """What one fit on training samples produced: the scaler and the box labeler."""

    names: tuple[str, ...]
    minmax: MinMax
    labeler: BoxLabeler

    def normalise(self, boxes: pd.DataFrame) -> np.ndarray:
        return self.minmax.transform(box_features(boxes, self.names))

    def labels(self, boxes: pd.DataFrame) -> np.ndarray:
        return self.labeler.predict(self.normalise(boxes))


def fit_geometry(
    train_boxes: pd.DataFrame, names: Sequence[str], method: str, k: int, seed: int
) -> FittedGeometry:
    """Fit min-max and box labels on the training boxes (``xmin, xmax, ymin, ymax`` columns)."""
    names = tuple(names)
    minmax = MinMax.fit(box_features(train_boxes, names))
    xn = minmax.transform(box_features(train_boxes, names))
    return FittedGeometry(names, minmax, BoxLabeler.fit(xn, method, k, seed))
