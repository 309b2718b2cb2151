"""Paired comparisons of setups and the paper's findings as verdicts.

Every setup of every backbone is measured on the same (repeat, fold) units and, within a unit,
on the same test samples, so two (backbone, setup) cells can be compared sample by sample. For
one metric, the unit's difference is a mean of per-sample terms ``d[u, i]``
(:func:`paired_terms`); :func:`tgmatl.evaluation.stats.paired_test` turns them into a difference, a
confidence interval and a p-value that account for the overlap of the units' training sets
(and, on a fixed test split, for the sampling of the test samples).

The findings of METHOD.md ("Findings the paper reports") are :data:`FINDINGS`: each names the
comparisons it makes. A finding that claims several inequalities at once (e.g. "highest of
all") holds only if every one of them holds (an intersection-union test: its p-value is the
largest of its parts').
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tgmatl.config import results_file
from tgmatl.errors import InputError

METRICS = ("accuracy", "r2", "class_map_at_r", "box_map_at_r")
METRIC_LABELS = {"accuracy": "accuracy", "r2": "box R²", "class_map_at_r": "class MAP@R",
                 "box_map_at_r": "box MAP@R"}
KEYS = ["repeat", "fold", "sample_id"]

Cell = tuple[str, str]  # (backbone, setup)


# --- reading ---------------------------------------------------------------------------------
def read_predictions(results_dir: str | Path, cells: Iterable[Cell]) -> dict[Cell, pd.DataFrame]:
    """``results/<backbone>/{train,tg}/<setup>.predictions.parquet`` of every cell, sorted by
    unit and sample; the cells must cover the same units and test samples. Of a unit's seed
    twins only twin 0 (its single run) is read."""
    out: dict[Cell, pd.DataFrame] = {}
    ref: pd.DataFrame | None = None
    for b, s in cells:
        path = results_file(results_dir, b, s, ".predictions.parquet")
        try:
            df = pd.read_parquet(path)
        except FileNotFoundError:
            raise InputError(f"{path}: predictions missing (stage train / train_tg)") from None
        if "twin" in df.columns:  # seed twins (train.twins): the unit's first run, twin 0
            df = df[df["twin"].to_numpy() == 0].drop(columns="twin")
        df = df.sort_values(KEYS, kind="stable").reset_index(drop=True)
        if ref is None:
            ref = df[KEYS]
        elif not df[KEYS].equals(ref):
            raise InputError(f"{path}: units or test samples differ from the other setups' "
                             f"(rerun the pipeline from the split stage)")
        out[b, s] = df
    return out


# --- per-sample terms ------------------------------------------------------------------------
def paired_terms(a: pd.DataFrame, b: pd.DataFrame, metric: str,
                 features: Sequence[str]) -> pd.DataFrame:
    """Per test sample and unit, the term ``d`` whose mean over the unit's samples is the
    unit's ``metric(a) - metric(b)`` (columns repeat, fold, sample_id, d; NaN: no term).

    Accuracy: ``1[correct]`` differences. MAP@R: differences of the jackknife terms
    (:func:`tgmatl.evaluation.stats.map_at_r_terms`, computed by the train stage: a test
    sample is a query and an item of the other queries' lists). Box R² (uniform average over the
    ``K`` features):
    the setups share the unit's test truth, so ``SST_k`` is common and ``R²_a - R²_b`` is the
    mean over the ``n`` samples of ``c_i = -(n/K) Σ_k (e²_a,ik - e²_b,ik) / SST_k``.
    """
    out = a[KEYS].copy()
    if metric == "accuracy":
        out["d"] = ((a["class_pred"] == a["class_id"]).astype(float)
                    - (b["class_pred"] == b["class_id"]).astype(float))
    elif metric in ("class_map_at_r", "box_map_at_r"):
        col = metric.split("_")[0] + "_map_term"
        out["d"] = a[col].to_numpy(float) - b[col].to_numpy(float)
    elif metric == "r2":
        unit = (a["repeat"].astype(np.int64) * 100_000 + a["fold"].astype(np.int64)).to_numpy()
        n = pd.Series(unit).map(pd.Series(unit).value_counts()).to_numpy(float)
        d = np.zeros(len(a))
        for f in features:
            y = a[f"feat_{f}"].to_numpy(float)
            centred = y - pd.Series(y).groupby(unit).transform("mean").to_numpy()
            sst = pd.Series(centred ** 2).groupby(unit).transform("sum").to_numpy()
            delta = ((a[f"pred_{f}"].to_numpy(float) - y) ** 2
                     - (b[f"pred_{f}"].to_numpy(float) - y) ** 2)
            # a feature constant on a unit's test samples has no R²; r2_score scores both
            # setups alike there, so it adds no difference
            d += np.where(sst > 0, -(n / len(features)) * delta / np.where(sst > 0, sst, 1.0),
                          0.0)
        out["d"] = d
    else:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return out


@dataclass(frozen=True)
class Comparison:
    a: Cell
    b: Cell
    metric: str
    result: object  # tgmatl.evaluation.stats.PairedComparison


def unit_memberships(split: pd.DataFrame) -> dict[tuple[int, int], np.ndarray]:
    """Training sample ids of every (repeat, fold) unit of a long split table."""
    out = {}
    for r, part in split.groupby("repeat", sort=True):
        rest = part[~part["test"].to_numpy(bool)]
        for f in sorted(int(v) for v in rest["fold"].unique()):
            out[int(r), f] = rest.loc[rest["fold"] != f, "sample_id"].to_numpy(dtype=object)
    return out


def compare(preds: dict[Cell, pd.DataFrame], a: Cell, b: Cell, metric: str,
            features: Sequence[str], train_ids: dict[tuple[int, int], np.ndarray], *,
            alpha: float) -> Comparison:
    """The paired test of ``metric(a) - metric(b)`` over the units
    (:func:`tgmatl.evaluation.stats.compare`)."""
    from tgmatl.evaluation import stats

    terms = paired_terms(preds[a], preds[b], metric, features)
    diffs, units = [], []
    for (r, f), part in terms.groupby(["repeat", "fold"], sort=True):
        key = (int(r), int(f))
        if key not in train_ids:
            raise InputError(f"predictions of {a} hold repeat {r}, fold {f}, which the split "
                             f"does not have (rerun the pipeline from the split stage)")
        diffs.append(part["d"].to_numpy(float))
        units.append(stats.Unit(int(r), part["sample_id"].to_numpy(dtype=object),
                                train_ids[key]))
    return Comparison(a, b, metric, stats.compare(diffs, units, alpha=alpha))


# --- the paper's findings ----------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    key: str
    text: str
    metric: str
    # (setup a, setup b) pairs, each claiming metric(a) > metric(b) on the same backbone
    pairs: tuple[tuple[str, str], ...] = ()
    # or: claims the setup's metric is highest on this backbone among all backbones
    best_backbone: tuple[str, str] | None = None  # (setup, backbone)


FINDINGS: tuple[Finding, ...] = (
    Finding("tg_matl_acc_above_matl", "TG-MATL's accuracy is above MATL's", "accuracy",
            (("tg_matl", "matl"),)),
    Finding("cltl_hard_acc_highest", "CLTL (Hard) has the highest accuracy of all", "accuracy",
            (("cltl_hard", "wtl"), ("cltl_hard", "cltl"), ("cltl_hard", "matl"),
             ("cltl_hard", "tg_matl"))),
    Finding("tg_matl_r2_above_cltl_matl", "TG-MATL's box R² is above CLTL's and MATL's", "r2",
            (("tg_matl", "cltl"), ("tg_matl", "matl"))),
    Finding("tg_matl_r2_below_wtl", "TG-MATL's box R² is (slightly) below WTL's", "r2",
            (("wtl", "tg_matl"),)),
    Finding("tg_matl_r2_best_with_dinov2", "TG-MATL's box R² is highest with DINOv2", "r2",
            best_backbone=("tg_matl", "dinov2")),
)
NOT_TESTED = ("Sweep (CLIP): more random percent raises accuracy; small top percent gives the "
              "best box R² — a statement about the sampling sweep (scripts/sweep_table.py), not "
              "about one run's setups.")


def finding_parts(f: Finding, backbones: Sequence[str]) -> list[tuple[str, Cell, Cell]]:
    """(row, a, b) of every comparison a finding makes, ``row`` naming the backbone the row is
    reported under."""
    if f.best_backbone is not None:
        setup, best = f.best_backbone
        if best not in backbones or len(backbones) < 2:
            return []
        return [(best, (best, setup), (other, setup)) for other in backbones if other != best]
    return [(b, (b, sa), (b, sb)) for b in backbones for sa, sb in f.pairs]


def verdict(diffs: Sequence[float], p_holm: Sequence[float], alpha: float) -> str:
    """``holds``: every part is significantly in the claimed direction; ``contradicted``: some
    part is significantly against it; else ``inconclusive``."""
    sig = [p < alpha for p in p_holm]
    if all(s and d > 0 for s, d in zip(sig, diffs, strict=True)):
        return "holds"
    if any(s and d < 0 for s, d in zip(sig, diffs, strict=True)):
        return "contradicted"
    return "inconclusive"
