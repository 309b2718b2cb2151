"""Mutual information, per-sample relevance scores (METHOD.md Eq. 5 or pointwise MI), Table I.

``I(x̃_k; y)`` is scikit-learn's k-nearest-neighbour estimator (``mutual_info_classif``,
continuous features) with a fixed ``random_state``: the estimator adds seeded jitter to the
features, so an unseeded call changes the ranking on every run (a pitfall of the authors' code).
A feature that is constant on the fitting samples gets MI 0 (the jitter alone would otherwise
give it a small spurious value); it normalises to 0 anyway (:mod:`tgmatl.method.geometry`).

Two relevance scores (``mi.score``):

- ``eq5`` (the paper's, default): ``s_i = Σ_k I(x̃_·k; y)·x̃_ik``. It is monotone in the feature
  values, so it ranks the largest / most elongated boxes first whatever their class.
- ``pointwise``: ``s_i`` = sample ``i``'s own term of the k-NN estimate of ``I(x̃; y)`` (Ross
  2014, the estimator behind ``mutual_info_classif``), whose mean over the samples *is* the MI:
  ``ψ(N) − ψ(N_{y_i}) + ψ(k_i) − ψ(m_i)``, where ``N`` counts the samples whose class has >= 2
  members, ``N_{y_i}`` those of ``i``'s class, ``k_i = min(k, N_{y_i} − 1)``, and ``m_i`` the
  samples (any class, ``i`` included) strictly closer to ``i`` than its ``k_i``-th same-class
  neighbour. ``m_i = k_i`` when ``i``'s neighbourhood is all of its class: the maximum,
  ``≈ ln(N / N_{y_i})`` = "the geometry names the class"; where classes mix ``m_i`` grows and the
  term falls to ~0 or below (kept signed: a negative term says the geometry points to *another*
  class). :func:`pointwise_mi` reproduces scikit-learn's steps exactly (scaling to unit variance,
  then jitter ``1e-10·max(1, mean|x|)·N(0, 1)`` drawn as one (N, K) ``RandomState(seed)`` matrix;
  same neighbour searches), so with ``per_feature=True`` the mean of column ``k`` equals
  ``mutual_info_classif(...)[k]`` wherever that is not clipped to 0.

  The score is the term on the **joint** geometry vector (multivariate k-NN, Euclidean distance
  on the unit-variance features; constant features dropped), not the sum of per-feature terms:
  the question is what the sample's box says about its class, and the box is the vector. A sum
  counts redundant features (width, area, diagonal, ...) once per copy and misses classes told
  apart only by a combination of features (tests/test_mi.py has both cases). With one feature
  the two coincide.

  Only training samples are in the fit, and only they are ranked by TG-MATL
  (:mod:`tgmatl.method.selection`). ``scores.parquet`` still has a row per (fold, sample):
  validation
  and test rows get ``NaN`` (not "0 information": their term is undefined without putting them,
  labels included, into the fit). A training sample whose class has a single training sample has
  no term either (scikit-learn drops it); it gets 0, which decides nothing since Eq. 7 selects a
  class's only member anyway.

:func:`score_folds` is the ``score`` stage: per fold, min-max, box labels and MI are fitted on
that fold's training samples (eq5 applies them to every sample). :func:`table_one` is
descriptive: normalisation, MI and scores fitted on all samples, as the paper's Table I.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from tgmatl.config import GeometryParams, MIParams
from tgmatl.errors import InputError
from tgmatl.method.geometry import MinMax, box_features, fit_geometry

log = logging.getLogger(__name__)
SCORES_META_KEY = "tgmatl"


def feature_mi(xn: np.ndarray, y: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """[K] ``I(x̃_k; y)`` in nats, seeded (identical on every call with the same inputs)."""
    from sklearn.feature_selection import mutual_info_classif

    xn = np.asarray(xn, np.float64)
    y = np.asarray(y)
    if xn.ndim != 2 or xn.shape[0] != y.shape[0]:
        raise ValueError(f"features {xn.shape} and labels {y.shape} do not match")
    if xn.shape[0] < 2:
        raise ValueError("mutual information needs at least 2 samples")
    mi = mutual_info_classif(
        xn, y, discrete_features=False, n_neighbors=n_neighbors, random_state=seed
    )
    constant = np.ptp(xn, axis=0) == 0
    return np.where(constant, 0.0, mi)


def sample_scores(xn: np.ndarray, mi: np.ndarray) -> np.ndarray:
    """Eq. 5: ``s_i = Σ_k I(x̃_·k; y) · x̃_ik`` (float64)."""
    return np.asarray(xn, np.float64) @ np.asarray(mi, np.float64)


def pointwise_mi(
    x: np.ndarray, y: np.ndarray, n_neighbors: int, seed: int, *, per_feature: bool = False
) -> np.ndarray:
    """Per-sample k-NN MI terms (nats) between the features and the class (module docstring).

    ``[N]`` on the joint features, or ``[N, K]`` one column per feature (``per_feature=True``).
    ``NaN`` for a sample whose class has a single sample. Constant features contribute nothing:
    their column is 0 (as :func:`feature_mi`) and the joint estimate leaves them out; with no
    varying feature every term is 0. Unclipped: ``max(0, nanmean)`` is the MI estimate.
    """
    x, y = _check_xy(x, y, n_neighbors)
    jittered = _jitter(x, seed)
    varying = np.ptp(x, axis=0) > 0
    _, cls, n_cls = np.unique(y, return_inverse=True, return_counts=True)
    alone = n_cls[cls] < 2
    if per_feature:
        out = np.zeros(x.shape)
        for j in np.flatnonzero(varying):
            out[:, j] = _ross_terms(jittered[:, [j]], y, n_neighbors)
        out[alone] = np.nan
        return out
    if not varying.any():
        return np.where(alone, np.nan, 0.0)
    return _ross_terms(jittered[:, varying], y, n_neighbors)


def pointwise_scores(xn: np.ndarray, y: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    """``mi.score: pointwise`` of the fitted samples: joint :func:`pointwise_mi`, 0 for a sample
    alone in its class (finite, as :func:`tgmatl.method.selection.select_mask` requires)."""
    return np.nan_to_num(pointwise_mi(xn, y, n_neighbors, seed), nan=0.0)


def score_stats(scores: np.ndarray, groups: Sequence) -> dict[str, dict[str, float | int | None]]:
    """Table I: per group ``count, mean, std, min, max`` of the scores.

    ``std`` is the sample standard deviation (ddof=1, as pandas' ``describe``); ``None`` for a
    group of one.
    """
    frame = pd.DataFrame({"g": np.asarray(groups), "s": np.asarray(scores, np.float64)})
    out: dict[str, dict[str, float | int | None]] = {}
    for g, s in frame.groupby("g", sort=True)["s"]:
        out[str(g)] = {
            "count": int(s.size),
            "mean": float(s.mean()),
            "std": float(s.std(ddof=1)) if s.size > 1 else None,
            "min": float(s.min()),
            "max": float(s.max()),
        }
    return out


def roles(split: pd.DataFrame, fold: int) -> np.ndarray:
    """[N] "train" | "val" | "test" of every sample for ``fold`` (one repeat of split.parquet)."""
    test = split["test"].to_numpy(bool)
    val = split["fold"].to_numpy() == fold
    return np.where(test, "test", np.where(val, "val", "train"))


def units(split: pd.DataFrame) -> list[tuple[int, int]]:
    """The (repeat, fold) evaluation units of a long split table, sorted."""
    return sorted({(int(r), int(f)) for r, f in zip(split["repeat"], split["fold"], strict=True)
                   if f >= 0})


def score_folds(
    samples: pd.DataFrame, split: pd.DataFrame, geometry: GeometryParams, mi: MIParams, seed: int
) -> tuple[pd.DataFrame, dict]:
    """Long table (unit × sample) of normalised features, box label and score; metadata.

    A unit is a (repeat, fold) of the long ``split`` table; ``samples`` and each repeat of
    ``split`` are matched on ``sample_id``; every sample must be in every repeat.
    """
    if "repeat" not in split.columns:
        raise InputError("split: missing column repeat (rerun the split stage)")
    by_repeat = {int(r): _align(samples, part) for r, part in split.groupby("repeat", sort=True)}
    names = list(geometry.features)
    todo = units(split)
    if not todo:
        raise InputError("split: no fold holds a validation sample")
    frames, mi_meta, joint_meta = [], {}, {}
    y_all = samples["class_id"].to_numpy()
    for rep, fold in tqdm(todo, desc="score units", disable=None):
        role = roles(by_repeat[rep], fold)
        train = role == "train"
        where = f"repeat {rep}, fold {fold}"
        if train.sum() < 2:
            raise InputError(f"{where}: {int(train.sum())} training sample(s), need >= 2")
        try:
            fitted = fit_geometry(
                samples[train], names, geometry.box_label.method, geometry.box_label.k, seed
            )
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        xn = fitted.normalise(samples)
        fold_mi = feature_mi(xn[train], y_all[train], mi.n_neighbors, seed)
        mi_meta[f"{rep}/{fold}"] = {n: float(v) for n, v in zip(names, fold_mi, strict=True)}
        frame = pd.DataFrame(
            {
                "repeat": np.full(len(samples), rep, np.int32),
                "fold": np.full(len(samples), fold, np.int32),
                "sample_id": samples["sample_id"].to_numpy(),
                "role": role,
                "class_id": samples["class_id"].to_numpy(np.int64),
            }
        )
        for j, n in enumerate(names):
            frame[f"feat_{n}"] = xn[:, j]
        frame["box_label"] = fitted.labeler.predict(xn).astype(np.int32)
        if mi.score == "eq5":
            frame["score"] = sample_scores(xn, fold_mi)
        else:  # pointwise: training samples only (module docstring); val/test NaN
            score = np.full(len(samples), np.nan)
            score[train] = pointwise_scores(xn[train], y_all[train], mi.n_neighbors, seed)
            frame["score"] = score
            joint_meta[f"{rep}/{fold}"] = _joint_mi(xn[train], y_all[train], mi.n_neighbors, seed)
        frames.append(frame)
        log.info("%s: MI %s", where, mi_meta[f"{rep}/{fold}"])
    meta = {
        "features": names,
        "mi": mi_meta,
        "box_label": {"method": geometry.box_label.method, "k": geometry.box_label.k},
        "n_neighbors": mi.n_neighbors,
        "score": mi.score,
        "seed": seed,
    }
    if mi.score == "pointwise":
        meta["joint_mi"] = joint_meta  # per fold: I(x̃; y) on the joint geometry, nats
    return pd.concat(frames, ignore_index=True), meta


def table_one(samples: pd.DataFrame, geometry: GeometryParams, mi: MIParams, seed: int) -> dict:
    """Descriptive Table I over every sample (min-max, MI and scores fitted on all samples).

    ``score_kind`` names the score the per-class statistics describe (``mi.score``); with
    ``pointwise``, ``joint_mi`` is ``I(x̃; y)`` on the joint geometry (the scores' mean).
    """
    names = list(geometry.features)
    raw = box_features(samples, names)
    xn = MinMax.fit(raw).transform(raw)
    y = samples["class_id"].to_numpy()
    values = feature_mi(xn, y, mi.n_neighbors, seed)
    if mi.score == "eq5":
        scores = sample_scores(xn, values)
    else:
        scores = pointwise_scores(xn, y, mi.n_neighbors, seed)
    out = {
        "mi": {n: float(v) for n, v in zip(names, values, strict=True)},
        "score_kind": mi.score,
        "score": score_stats(scores, samples["class_name"].to_numpy()),
    }
    if mi.score == "pointwise":
        out["joint_mi"] = _joint_mi(xn, y, mi.n_neighbors, seed)
    return out


def write_scores(path, table: pd.DataFrame, meta: dict) -> None:
    """``scores.parquet`` with the JSON metadata under the file-metadata key ``tgmatl``."""
    import pyarrow as pa

    from tgmatl.io import write_parquet

    at = pa.Table.from_pandas(table, preserve_index=False)
    md = dict(at.schema.metadata or {})
    md[SCORES_META_KEY.encode()] = json.dumps(meta, sort_keys=True).encode()
    write_parquet(path, at.replace_schema_metadata(md))


def read_scores_meta(path) -> dict:
    import pyarrow.parquet as pq

    md = pq.read_schema(path).metadata or {}
    return json.loads(md[SCORES_META_KEY.encode()])


def _joint_mi(x: np.ndarray, y: np.ndarray, n_neighbors: int, seed: int) -> float:
    """``I(x̃; y)`` on the joint features: the pointwise terms' mean, clipped at 0 as sklearn."""
    terms = pointwise_mi(x, y, n_neighbors, seed)
    return float(max(0.0, np.nanmean(terms))) if np.isfinite(terms).any() else 0.0


def _check_xy(x, y, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features {x.shape} and labels {y.shape} do not match")
    if x.shape[0] < 2:
        raise ValueError("mutual information needs at least 2 samples")
    if not np.all(np.isfinite(x)):
        row = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        raise ValueError(f"features: non-finite value in sample {row}")
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer):
        raise ValueError(f"n_neighbors: expected an integer, got {n_neighbors!r}")
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors: {n_neighbors} out of range, must be >= 1")
    return x, y


def _jitter(x: np.ndarray, seed: int) -> np.ndarray:
    """``mutual_info_classif``'s preprocessing: unit variance (no centring), then seeded noise
    that breaks ties between equal boxes, one (N, K) draw for all features."""
    from sklearn.preprocessing import scale
    from sklearn.utils import check_random_state

    # scikit-learn scales x[:, <all-True mask>], an F-ordered copy; the column sums (hence the
    # last bit of each value, hence which neighbour lies inside a radius) depend on that order
    scaled = scale(x[:, np.ones(x.shape[1], bool)], with_mean=False, copy=False)
    noise = check_random_state(seed).standard_normal(size=scaled.shape)
    return scaled + 1e-10 * np.maximum(1.0, np.mean(np.abs(scaled), axis=0)) * noise


def _ross_terms(c: np.ndarray, y: np.ndarray, n_neighbors: int) -> np.ndarray:
    """[N] Ross (2014) terms on points ``c`` (N, d), Euclidean; NaN for one-sample classes."""
    from scipy.special import digamma
    from sklearn.neighbors import KDTree, NearestNeighbors

    _, cls, counts = np.unique(y, return_inverse=True, return_counts=True)
    n_class = counts[cls].astype(np.float64)
    radius = np.zeros(len(y))
    k_i = np.zeros(len(y))
    for j in np.flatnonzero(counts > 1):
        members = cls == j
        k = min(n_neighbors, int(counts[j]) - 1)
        # kneighbors() without X leaves each point out of its own neighbours
        dist, _ = NearestNeighbors(n_neighbors=k).fit(c[members]).kneighbors()
        # just inside the k-th neighbour: m_i counts the points strictly closer, i included
        radius[members] = np.nextafter(dist[:, -1], 0)
        k_i[members] = k
    out = np.full(len(y), np.nan)
    keep = n_class > 1
    if not keep.any():
        return out
    pts = c[keep]
    m = KDTree(pts).query_radius(pts, radius[keep], count_only=True)
    out[keep] = (
        digamma(keep.sum()) + digamma(k_i[keep]) - digamma(n_class[keep]) - digamma(m)
    )
    return out


def _align(samples: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    for col in ("sample_id", "test", "fold"):
        if col not in split.columns:
            raise InputError(f"split: missing column {col}")
    by_id = split.set_index("sample_id")
    missing = ~samples["sample_id"].isin(by_id.index)
    if missing.any():
        raise InputError(f"split: sample {samples['sample_id'][missing].iloc[0]} not in the split")
    return by_id.loc[samples["sample_id"]].reset_index()
