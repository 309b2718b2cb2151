"""Paired comparisons of setups and the paper's findings as parts to test.

Every setup of every backbone is measured on the same (repeat, fold) units and, within a unit,
on the same test samples, so two (backbone, setup) cells can be compared sample by sample. For
one metric, each side's unit value is a mean of per-sample terms (:func:`arm_terms`; with seed
twins, averaged over the twins); :func:`compare` hands the differences, the test samples'
scenes and the twins' differences (the difference's own: twins are paired by seed) to
:func:`tgmatl.evaluation.stats.compare`, which turns them into a difference, an interval and a
p-value.

The findings of METHOD.md ("Findings the paper reports") are :data:`FINDINGS`;
:func:`finding_rows` says, per backbone, which comparisons each one makes and how each is
tested (one-sided, or as an equivalence within a margin), or why it cannot be judged in this
run. The verdict rules themselves are in :mod:`tgmatl.evaluation.evidence`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tgmatl.config import SETUP_LABELS, results_file
from tgmatl.errors import InputError

METRICS = ("accuracy", "r2", "class_map_at_r", "box_map_at_r")
METRIC_LABELS = {"accuracy": "accuracy", "r2": "box R²", "class_map_at_r": "class MAP@R",
                 "box_map_at_r": "box MAP@R"}
KEYS = ["repeat", "fold", "twin", "sample_id"]

Cell = tuple[str, str]  # (backbone, setup)
Unit = tuple[int, int]  # (repeat, fold)


# --- reading ---------------------------------------------------------------------------------
def read_predictions(results_dir: str | Path, cells: Iterable[Cell]) -> dict[Cell, pd.DataFrame]:
    """``results/<backbone>/{train,tg}/<setup>.predictions.parquet`` of every cell, sorted by
    unit, twin and sample (results without seed twins get ``twin`` 0); every cell must cover
    the same units and test samples."""
    out: dict[Cell, pd.DataFrame] = {}
    ref: pd.DataFrame | None = None
    for b, s in cells:
        path = results_file(results_dir, b, s, ".predictions.parquet")
        try:
            df = pd.read_parquet(path)
        except FileNotFoundError:
            raise InputError(f"{path}: predictions missing (stage train / train_tg)") from None
        if "twin" not in df.columns:
            df["twin"] = np.int32(0)
        df = df.sort_values(KEYS, kind="stable").reset_index(drop=True)
        units = df.loc[df["twin"] == 0, ["repeat", "fold", "sample_id"]].reset_index(drop=True)
        if ref is None:
            ref = units
        elif not units.equals(ref):
            raise InputError(f"{path}: units or test samples differ from the other setups' "
                             f"(rerun the pipeline from the split stage)")
        out[b, s] = df
    return out


# --- per-sample terms ------------------------------------------------------------------------
def arm_terms(df: pd.DataFrame, metric: str, features: Sequence[str]) -> pd.Series:
    """Per row (unit, twin, test sample) of one cell's predictions, the term whose mean over a
    unit's (and twin's) test samples is that unit's ``metric``.

    Accuracy: ``1[correct]``. MAP@R: the jackknife terms
    (:func:`tgmatl.evaluation.terms.map_at_r_terms`, computed by the train stage: a test sample
    is a query and an item of the other queries' lists). Box R² (uniform average over the
    ``K`` features, ``SST_k`` of the unit's test truth): ``u_i = 1 - (n/K) Σ_k e²_ik / SST_k``;
    a feature constant on a unit's test samples has no R² and adds nothing.
    """
    if metric == "accuracy":
        return (df["class_pred"] == df["class_id"]).astype(float)
    if metric in ("class_map_at_r", "box_map_at_r"):
        return df[metric.split("_")[0] + "_map_term"].astype(float)
    if metric == "r2":
        twin = df["twin"].astype(np.int64) if "twin" in df.columns else 0
        key = (df["repeat"].astype(np.int64) * 1_000_000 + df["fold"].astype(np.int64) * 1_000
               + twin).to_numpy()
        groups = pd.Series(key)
        n = groups.map(groups.value_counts()).to_numpy(float)
        u = np.ones(len(df))
        for f in features:
            y = df[f"feat_{f}"].to_numpy(float)
            centred = y - pd.Series(y).groupby(key).transform("mean").to_numpy()
            sst = pd.Series(centred ** 2).groupby(key).transform("sum").to_numpy()
            se = (df[f"pred_{f}"].to_numpy(float) - y) ** 2
            u -= np.where(sst > 0, (n / len(features)) * se / np.where(sst > 0, sst, 1.0), 0.0)
        return pd.Series(u, index=df.index)
    raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def paired_terms(a: pd.DataFrame, b: pd.DataFrame, metric: str,
                 features: Sequence[str]) -> pd.DataFrame:
    """Per unit and test sample, ``d``: A's term minus B's, each averaged over its twins, so the
    mean of ``d`` over a unit's samples is the unit's ``metric(a) - metric(b)`` (columns repeat,
    fold, sample_id, d; NaN: no term)."""
    keys = ["repeat", "fold", "sample_id"]
    ta = a[keys].assign(v=arm_terms(a, metric, features)).groupby(keys, sort=True)["v"].mean()
    tb = b[keys].assign(v=arm_terms(b, metric, features)).groupby(keys, sort=True)["v"].mean()
    return (ta - tb).rename("d").reset_index()


@dataclass(frozen=True)
class Comparison:
    a: Cell
    b: Cell
    metric: str
    result: Any  # tgmatl.evaluation.stats.PairedComparison


def unit_memberships(split: pd.DataFrame) -> dict[Unit, np.ndarray]:
    """Training sample ids of every (repeat, fold) unit of a long split table."""
    out = {}
    for r, part in split.groupby("repeat", sort=True):
        rest = part[~part["test"].to_numpy(bool)]
        for f in sorted(int(v) for v in rest["fold"].unique()):
            out[int(r), f] = rest.loc[rest["fold"] != f, "sample_id"].to_numpy(dtype=object)
    return out


@dataclass(frozen=True)
class _Side:
    """One side of a comparison on every unit: the mean terms over its twins, aligned by sample
    id, and the twins' contrasts (``[n, T - 1]``, column 0 twin 0 - twin 1; None with a single
    twin: :func:`tgmatl.evaluation.stats.twin_contrasts`)."""

    ids: dict[Unit, np.ndarray]
    mean: dict[Unit, np.ndarray]
    delta: dict[Unit, np.ndarray] | None
    twins: int


def _side(df: pd.DataFrame, metric: str, features: Sequence[str],
          twins: Sequence[int] | None = None) -> _Side:
    """``twins``: the twins this side averages (default: all the cell has)."""
    from tgmatl.evaluation import stats

    v = df[["repeat", "fold", "twin", "sample_id"]].assign(v=arm_terms(df, metric, features))
    if twins is not None:
        v = v[v["twin"].isin(list(twins))]
    wide = v.set_index(["repeat", "fold", "sample_id", "twin"])["v"].unstack("twin").sort_index()
    cols = list(wide.columns)
    ids, mean, delta = {}, {}, {}
    for (r, f), part in wide.groupby(level=[0, 1], sort=True):
        key = (int(r), int(f))
        ids[key] = part.index.get_level_values(2).to_numpy(dtype=object)
        values = part.to_numpy(float)
        mean[key] = values.mean(axis=1)
        if len(cols) >= 2:
            delta[key] = stats.twin_contrasts(values)
    return _Side(ids, mean, delta if len(cols) >= 2 else None, len(cols))


def compare(preds: dict[Cell, pd.DataFrame], a: Cell, b: Cell, metric: str,
            features: Sequence[str], train_ids: dict[Unit, np.ndarray],
            scenes: Mapping[Any, Any] | None, *, alpha: float,
            twins_a: Sequence[int] | None = None,
            twins_b: Sequence[int] | None = None) -> Comparison:
    """The paired test of ``metric(a) - metric(b)`` over the units
    (:func:`tgmatl.evaluation.stats.compare`), clustered on ``scenes`` (sample id -> scene).

    ``twins_a`` / ``twins_b``: the seed twins a side averages (default: all). Where both sides
    average the same twins, twin ``t`` of A and of B share a seed (the pipeline seeds units and
    twins, not setups), and the difference's own twin 0 - twin 1 measures its seed noise
    (setups started alike move together). The A/A control compares one twin of a setup with
    another (``twins_a=[0], twins_b=[1]``); the seed noise of each of those sides is then
    measured apart, by that setup's twin 0 - twin 1.
    """
    from tgmatl.evaluation import stats

    # every twin of a cell once (the A/A control's two sides are one cell): its twins'
    # contrasts measure the seed noise of any side drawn from it
    whole_a = _side(preds[a], metric, features)
    whole_b = whole_a if b == a else _side(preds[b], metric, features)
    sa = whole_a if twins_a is None else _side(preds[a], metric, features, twins_a)
    sb = whole_b if twins_b is None else _side(preds[b], metric, features, twins_b)
    noise_a = None if whole_a.delta is None else (whole_a.delta, sa.twins)
    noise_b = None if whole_b.delta is None else (whole_b.delta, sb.twins)
    diffs, units, deltas_a, deltas_b = [], [], [], []
    for key in sorted(sa.ids):
        if key not in train_ids:
            raise InputError(f"predictions of {a} hold repeat {key[0]}, fold {key[1]}, which "
                             f"the split does not have (rerun the pipeline from the split stage)")
        if key not in sb.ids or not np.array_equal(sa.ids[key], sb.ids[key]):
            raise InputError(f"{a} and {b}: repeat {key[0]}, fold {key[1]} hold other test "
                             f"samples (rerun the pipeline from the split stage)")
        diffs.append(sa.mean[key] - sb.mean[key])
        units.append(stats.Unit(key[0], sa.ids[key], train_ids[key]))
        if noise_a is not None and noise_b is not None:
            deltas_a.append(noise_a[0][key])
            deltas_b.append(noise_b[0][key])
    seed: stats.SeedNoise | tuple[stats.SeedNoise, stats.SeedNoise] | None = None
    if noise_a is not None and noise_b is not None:
        if twins_a is None and twins_b is None and sa.twins == sb.twins:
            seed = stats.SeedNoise.of_difference(deltas_a, deltas_b, sa.twins)
        else:
            seed = (stats.SeedNoise(deltas_a, noise_a[1]),
                    stats.SeedNoise(deltas_b, noise_b[1]))
    try:
        result = stats.compare(diffs, units, alpha=alpha, groups=scenes, seed_noise=seed)
    except ValueError as exc:
        if "group" in str(exc):
            raise InputError(f"{a} vs {b}, {metric}: {exc} (split.group decides how scenes "
                             "are split; samples.parquet's scene_id names them)") from None
        raise
    return Comparison(a, b, metric, result)


# --- the paper's findings ----------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One finding of the paper. ``kind``:

    - ``above``: on each backbone, ``metric(a) > metric(b)`` for every pair (one-sided);
    - ``highest``: on each backbone, ``setup`` above every other configured setup (one-sided);
    - ``within_margin``: on each backbone, ``|metric(a) - metric(b)| < eval.margin.<metric>``
      (equivalence, TOST): the paper's "slightly below";
    - ``best_backbone``: ``setup``'s metric is higher with ``backbone`` than with every other
      configured backbone (one-sided).
    """

    key: str
    text: str
    metric: str
    kind: str
    pairs: tuple[tuple[str, str], ...] = ()
    setup: str = ""
    backbone: str = ""


FINDINGS: tuple[Finding, ...] = (
    Finding("tg_matl_acc_above_matl", "TG-MATL's accuracy is above MATL's", "accuracy", "above",
            (("tg_matl", "matl"),)),
    Finding("cltl_hard_acc_highest", "CLTL (Hard) has the highest accuracy of all", "accuracy",
            "highest", setup="cltl_hard"),
    Finding("tg_matl_r2_above_cltl_matl", "TG-MATL's box R² is above CLTL's and MATL's", "r2",
            "above", (("tg_matl", "cltl"), ("tg_matl", "matl"))),
    Finding("tg_matl_r2_below_wtl", "TG-MATL's box R² is (slightly) below WTL's", "r2",
            "within_margin", (("tg_matl", "wtl"),)),
    Finding("tg_matl_r2_best_with_dinov2", "TG-MATL's box R² is highest with DINOv2", "r2",
            "best_backbone", setup="tg_matl", backbone="dinov2"),
)
NOT_TESTED = ("Sweep (CLIP): more random percent raises accuracy; small top percent gives the "
              "best box R² — a statement about the sampling sweep (scripts/sweep_table.py), not "
              "about one run's setups.")


@dataclass(frozen=True)
class FindingRow:
    """A finding on one backbone: the comparisons it makes (each ``(a, b)`` claiming
    ``metric(a) > metric(b)``, or ``|a - b| < margin`` for ``within_margin``), or the reason it
    cannot be judged in this run (``parts`` empty)."""

    finding: Finding
    backbone: str
    parts: tuple[tuple[Cell, Cell], ...]
    reason: str = ""


def finding_rows(f: Finding, backbones: Sequence[str], setups: Sequence[str]) -> list[FindingRow]:
    """The rows (one per backbone; one in all for ``best_backbone``) of a finding in a run with
    these backbones and setups; nothing is skipped: a row that cannot be judged says why."""
    label = SETUP_LABELS.get
    if f.kind == "best_backbone":
        if f.setup not in setups:
            return [FindingRow(f, f.backbone, (), f"{label(f.setup, f.setup)} is not in "
                                                  "train.setups")]
        if f.backbone not in backbones:
            return [FindingRow(f, f.backbone, (), f"{f.backbone} is not in embed.backbones")]
        if len(backbones) < 2:
            return [FindingRow(f, f.backbone, (), "needs at least 2 backbones")]
        return [FindingRow(f, f.backbone, tuple(((f.backbone, f.setup), (o, f.setup))
                                                for o in backbones if o != f.backbone))]
    rows = []
    for b in backbones:
        if f.kind == "highest":
            others = [s for s in setups if s != f.setup]
            if f.setup not in setups or not others:
                what = (f"{label(f.setup, f.setup)} is not in train.setups"
                        if f.setup not in setups else "no other setup to compare with")
                rows.append(FindingRow(f, b, (), what))
                continue
            rows.append(FindingRow(f, b, tuple(((b, f.setup), (b, o)) for o in others)))
            continue
        missing = sorted({s for pair in f.pairs for s in pair} - set(setups))
        if missing:
            names = ", ".join(label(s, s) for s in missing)
            rows.append(FindingRow(f, b, (), f"{names} not in train.setups"))
            continue
        rows.append(FindingRow(f, b, tuple(((b, x), (b, y)) for x, y in f.pairs)))
    return rows
