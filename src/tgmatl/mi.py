"""Mutual information, per-sample relevance scores (METHOD.md Eq. 5) and Table I statistics.

``I(x̃_k; y)`` is scikit-learn's k-nearest-neighbour estimator (``mutual_info_classif``,
continuous features) with a fixed ``random_state``: the estimator adds seeded jitter to the
features, so an unseeded call changes the ranking on every run (a pitfall of the authors' code).
A feature that is constant on the fitting samples gets MI 0 (the jitter alone would otherwise
give it a small spurious value); it normalises to 0 anyway (:mod:`tgmatl.geometry`).

:func:`score_folds` is the ``score`` stage: per fold, min-max, box labels and MI are fitted on
that fold's training samples and applied to every sample. :func:`table_one` is descriptive:
normalisation and MI fitted on all samples, as the paper's Table I.
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
from tgmatl.geometry import MinMax, box_features, fit_geometry

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
    frames, mi_meta = [], {}
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
        fold_mi = feature_mi(xn[train], samples["class_id"].to_numpy()[train], mi.n_neighbors, seed)
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
        frame["score"] = sample_scores(xn, fold_mi)
        frames.append(frame)
        log.info("%s: MI %s", where, mi_meta[f"{rep}/{fold}"])
    meta = {
        "features": names,
        "mi": mi_meta,
        "box_label": {"method": geometry.box_label.method, "k": geometry.box_label.k},
        "n_neighbors": mi.n_neighbors,
        "seed": seed,
    }
    return pd.concat(frames, ignore_index=True), meta


def table_one(samples: pd.DataFrame, geometry: GeometryParams, mi: MIParams, seed: int) -> dict:
    """Descriptive Table I over every sample (min-max and MI fitted on all samples)."""
    names = list(geometry.features)
    raw = box_features(samples, names)
    xn = MinMax.fit(raw).transform(raw)
    values = feature_mi(xn, samples["class_id"].to_numpy(), mi.n_neighbors, seed)
    scores = sample_scores(xn, values)
    return {
        "mi": {n: float(v) for n, v in zip(names, values, strict=True)},
        "score": score_stats(scores, samples["class_name"].to_numpy()),
    }


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


def _align(samples: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    for col in ("sample_id", "test", "fold"):
        if col not in split.columns:
            raise InputError(f"split: missing column {col}")
    by_id = split.set_index("sample_id")
    missing = ~samples["sample_id"].isin(by_id.index)
    if missing.any():
        raise InputError(f"split: sample {samples['sample_id'][missing].iloc[0]} not in the split")
    return by_id.loc[samples["sample_id"]].reset_index()
