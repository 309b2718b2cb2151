"""The report's evidence: TG-MATL against every other setup, the paper's findings as verdicts,
an A/A control and the minimum detectable effects (``metrics/comparisons.json``,
``metrics/claims.json``, report section).

Intervals and variances: :mod:`tgmatl.evaluation.stats`. The rules:

- **TG-MATL table**: two-sided tests (no direction is claimed), Holm within the table; the
  intervals beside them are the unadjusted two-sided (1 - alpha) intervals.
- **Findings**: each is tested as stated. A part claiming ``a > b`` is a one-sided test; a
  claim of a *slight* difference is an equivalence test (TOST: ``|a - b| < eval.margin``). A
  finding of several parts holds only if every part does: an intersection-union test, whose
  p-value is the largest of its parts' (no adjustment inside a finding; Berger 1982). It is
  contradicted if some part is significantly against the claim (the smallest such p times the
  parts' tests: Bonferroni inside the union). Holm runs once across every finding row's claim
  and contrary (2 p-values a row), so the whole claims table makes a wrong verdict with
  probability at most alpha under any null (measured in ``benchmarks/bench_calibration.py``).
  The bound shown is the least favourable
  part's unadjusted one-sided (1 - alpha) bound (TOST: the (1 - 2 alpha) interval), next to the
  adjusted p that made the verdict.
- **A/A control**: per backbone, TG-MATL's seed twin 0 against its twin 1 through the same
  test, Holm over the metrics. A significant control means the test is not to be trusted on
  these data.
- **MDE**: per comparison, the difference it would detect with 80 % power at alpha
  (two-sided); per backbone and metric, the largest over TG-MATL's comparisons (an effect of
  that size is detectable against every setup).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tgmatl.config import SETUP_LABELS, EvalParams
from tgmatl.evaluation.comparisons import (
    FINDINGS,
    METRIC_LABELS,
    METRICS,
    NOT_TESTED,
    Cell,
    Comparison,
    FindingRow,
    compare,
    finding_rows,
    read_predictions,
    unit_memberships,
)
from tgmatl.evaluation.stats import holm

REFERENCE = "tg_matl"
POWER = 0.8


@dataclass
class Evidence:
    comparisons: list[tuple[Comparison, float]]          # (comparison, Holm-adjusted p)
    claims: list[dict[str, Any]]                          # one row per finding × backbone
    alpha: float
    method: str
    controls: dict[str, dict[str, Any]] = field(default_factory=dict)  # per backbone
    mde: dict[str, dict[str, float | None]] = field(default_factory=dict)  # backbone -> metric


def _r(v: float | None, digits: int = 6) -> float | None:
    if v is None:
        return None
    v = float(v)
    return round(v, digits) if np.isfinite(v) else None


def judge_part(c: Comparison, kind: str, margin: float, alpha: float) -> dict[str, float]:
    """One part of a finding: its p for the claim, its p against it, the number of one-sided
    tests the 'against' side takes, and the bound(s) matching the test."""
    r = c.result
    if kind == "within_margin":  # TOST: both one-sided tests must reject
        return {"p_for": max(r.p_greater(-margin), r.p_less(margin)),
                "p_against": min(r.p_less(-margin), r.p_greater(margin)), "tests": 2,
                "low": r.bound(1 - alpha, "lower"), "high": r.bound(1 - alpha, "upper")}
    return {"p_for": r.p_greater(0.0), "p_against": r.p_less(0.0), "tests": 1,
            "low": r.bound(1 - alpha, "lower"), "high": float("nan")}


def verdict_rows(rows: Sequence[FindingRow], parts: Mapping[int, Sequence[Comparison]],
                 margins: Mapping[str, float], alpha: float) -> list[dict[str, Any]]:
    """The claims table: every row judged by the rules of the module doc (``parts[i]``: row
    ``i``'s comparisons, in its parts' order)."""
    judged: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        f = row.finding
        base = {"backbone": row.backbone, "key": f.key, "text": f.text, "metric": f.metric,
                "kind": f.kind}
        if not row.parts:
            judged.append({**base, "verdict": "not evaluable", "reason": row.reason,
                           "test": "", "comparison": "", "covers": []})
            continue
        margin = margins.get(f.metric, 0.0)
        checks = [judge_part(c, f.kind, margin, alpha) for c in parts[i]]
        worst = int(np.argmax([x["p_for"] for x in checks]))
        c = parts[i][worst]
        tests = sum(x["tests"] for x in checks)
        sign = "|{a} − {b}| < " + f"{margin:g}" if f.kind == "within_margin" else "{a} > {b}"
        judged.append({
            **base, "reason": "",
            "test": (f"equivalence (TOST, margin ±{margin:g})" if f.kind == "within_margin"
                     else f"one-sided, intersection-union over {len(checks)} part(s)"),
            "comparison": " and ".join(sign.format(a=_cell(x.a), b=_cell(x.b))
                                       for x in parts[i]),
            "covers": [x.b[1] if x.a[0] == x.b[0] else x.b[0] for x in parts[i]],
            "diff": c.result.diff, "bound_low": checks[worst]["low"],
            "bound_high": checks[worst]["high"],
            "p": max(x["p_for"] for x in checks),
            "p_against": min(1.0, tests * min(x["p_against"] for x in checks)),
            "least_favourable": f"{_cell(c.a)} − {_cell(c.b)}",
        })
    live = [r for r in judged if "p" in r]
    if live:
        # one Holm family of every row's claim and contrary: a wrong 'contradicted' is as wrong
        # as a wrong 'holds' (two separate families gave 0.085 family-wise on simulated global
        # nulls; bench_calibration.py)
        adj = holm([r["p"] for r in live] + [r["p_against"] for r in live])
        for r, p_for, p_against in zip(live, adj[:len(live)], adj[len(live):], strict=True):
            r["p_holm"], r["p_against_holm"] = float(p_for), float(p_against)
            r["verdict"] = ("holds" if p_for < alpha else
                            "contradicted" if p_against < alpha else "inconclusive")
    return judged


def build_evidence(results_dir: str | Path, results: dict, backbones: Sequence[str],
                   setups: Sequence[str], ev: EvalParams, split: pd.DataFrame,
                   scenes: Mapping[Any, Any] | None) -> Evidence:
    """Every TG-MATL comparison, every finding's verdict, the A/A controls and the MDEs of one
    run (``split``: the long split table the units came from; ``scenes``: sample id -> scene,
    the independent groups of the test samples)."""
    backbones = list(backbones)
    features = list(next(iter(results.values()))["features"])
    train_ids = unit_memberships(split)
    cells = [(b, s) for b in backbones for s in setups]
    preds = read_predictions(results_dir, cells)
    cache: dict[tuple[Cell, Cell, str], Comparison] = {}

    def get(a: Cell, b: Cell, metric: str) -> Comparison:
        key = (a, b, metric)
        if key not in cache:
            cache[key] = compare(preds, a, b, metric, features, train_ids, scenes,
                                 alpha=ev.alpha)
        return cache[key]

    table = [get((b, REFERENCE), (b, s), m) for b in backbones for m in METRICS
             for s in setups if s != REFERENCE] if REFERENCE in setups else []
    adjusted = holm([c.result.p_value for c in table]) if table else np.array([])

    rows = [row for f in FINDINGS for row in finding_rows(f, backbones, setups)]
    parts = {i: [get(a, b, row.finding.metric) for a, b in row.parts]
             for i, row in enumerate(rows)}
    margins = {m: getattr(ev.margin, m) for m in METRICS}
    claims = verdict_rows(rows, parts, margins, ev.alpha)

    controls = {b: control(preds, b, features, train_ids, scenes, ev.alpha)
                for b in backbones} if REFERENCE in setups else {}
    mde: dict[str, dict[str, float | None]] = {}
    for c in table:
        cur = mde.setdefault(c.a[0], {}).get(c.metric)
        val = c.result.mde(POWER)
        mde[c.a[0]][c.metric] = val if cur is None else max(cur, val)
    method = table[0].result.method if table else (
        next(iter(cache.values())).result.method if cache else "")
    return Evidence(list(zip(table, adjusted, strict=True)), claims, ev.alpha, method,
                    controls, mde)


def control(preds: dict[Cell, pd.DataFrame], backbone: str, features: Sequence[str],
            train_ids: dict, scenes: Mapping[Any, Any] | None, alpha: float) -> dict[str, Any]:
    """TG-MATL's twin 0 against its twin 1 on every metric (the same test as every other
    comparison), Holm over the metrics: ``passes`` when none is significant."""
    cell = (backbone, REFERENCE)
    twins = sorted(int(t) for t in preds[cell]["twin"].unique())
    if len(twins) < 2:
        return {"verdict": "not evaluable",
                "reason": "needs train.twins >= 2 (TG-MATL has one seed per unit)"}
    comps = [compare(preds, cell, cell, m, features, train_ids, scenes, alpha=alpha,
                     twins_a=[twins[0]], twins_b=[twins[1]]) for m in METRICS]
    adj = holm([c.result.p_value for c in comps])
    out: dict[str, Any] = {"verdict": "fails" if np.any(adj < alpha) else "passes",
                           "reason": ""}
    for c, p in zip(comps, adj, strict=True):
        out[c.metric] = {"diff": c.result.diff, "ci_low": c.result.ci_low,
                         "ci_high": c.result.ci_high, "p": c.result.p_value, "p_holm": float(p)}
    return out


def _label(setup: str) -> str:
    return SETUP_LABELS.get(setup, setup)


def _cell(c: Cell) -> str:
    return f"{_label(c[1])} [{c[0]}]"


def train_share(r: Any) -> float | None:
    """The training part's share of a decomposed comparison's variance (None otherwise)."""
    if r.method != "decomposed" or not r.se > 0:
        return None
    return float(r.var_train / r.se**2)


def floored(r: Any) -> bool:
    """A comparison whose training part sat at its floor of 0: its interval rests on the test
    and seed parts alone. Through the pipeline's calibration nearly every false positive had
    this (README, calibration); on a significant row it marks where to read a verdict with
    care, not a verdict changed."""
    return train_share(r) == 0.0


# --- metrics JSON ------------------------------------------------------------------------------
def comparisons_json(ev: Evidence) -> dict:
    """``{backbone: {vs_<setup>: {<metric>_diff, _ci_low, _ci_high, _p, _p_holm, _mde,
    _train_share}}, mde: {<metric>: …}}}``: two-sided tests, unadjusted intervals, Holm within
    the table. ``_train_share``: the training part's share of the variance (0: at its floor,
    :func:`floored`)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for c, p_adj in ev.comparisons:
        row = out.setdefault(c.a[0], {}).setdefault(f"vs_{c.b[1]}", {})
        r = c.result
        row.update({f"{c.metric}_diff": _r(r.diff), f"{c.metric}_ci_low": _r(r.ci_low),
                    f"{c.metric}_ci_high": _r(r.ci_high), f"{c.metric}_p": _r(r.p_value),
                    f"{c.metric}_p_holm": _r(p_adj), f"{c.metric}_mde": _r(r.mde(POWER)),
                    f"{c.metric}_train_share": _r(train_share(r))})
    for b, per_metric in ev.mde.items():
        out.setdefault(b, {})["mde"] = {m: _r(v) for m, v in per_metric.items()}
    return out


def claims_json(ev: Evidence) -> dict:
    """``{backbone: {<finding>: {verdict, test, covers, diff, bound_low, bound_high, p, p_holm,
    reason}, aa_control: {verdict, <metric>_diff, _p, _p_holm, …}}}`` (shallow keys)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in ev.claims:
        out.setdefault(c["backbone"], {})[c["key"]] = {
            "verdict": c["verdict"], "test": c["test"], "covers": list(c["covers"]),
            "diff": _r(c.get("diff")), "bound_low": _r(c.get("bound_low")),
            "bound_high": _r(c.get("bound_high")), "p": _r(c.get("p")),
            "p_holm": _r(c.get("p_holm")), "reason": c["reason"]}
    for b, ctl in ev.controls.items():
        row: dict[str, Any] = {"verdict": ctl["verdict"], "reason": ctl["reason"]}
        for m in METRICS:
            if m in ctl:
                row.update({f"{m}_{k}": _r(v) for k, v in ctl[m].items()})
        out.setdefault(b, {})["aa_control"] = row
    return out


# --- markdown ----------------------------------------------------------------------------------
def _fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def claims_markdown(ev: Evidence) -> str:
    conf = int(round(100 * (1 - ev.alpha)))
    lines = [f"| finding | backbone | test | claim | difference | {conf} % bound (one-sided, "
             "unadjusted) | p (raw) | p (Holm, all findings) | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in ev.claims:
        if c["verdict"] == "not evaluable":
            lines.append(f"| {c['text']} | {c['backbone']} | — | — | — | — | — | — | "
                         f"**not evaluable**: {c['reason']} |")
            continue
        if np.isnan(c["bound_high"]):
            bound = f"≥ {c['bound_low']:+.3f}"
        else:
            bound = f"[{c['bound_low']:+.3f}, {c['bound_high']:+.3f}] ({100 - 2 * (100 - conf)} %)"
        lines.append(f"| {c['text']} | {c['backbone']} | {c['test']} | {c['comparison']} | "
                     f"{c['diff']:+.3f} | {bound} | {_fmt_p(c['p'])} | {_fmt_p(c['p_holm'])} | "
                     f"**{c['verdict']}** |")
    return "\n".join(lines)


def comparisons_markdown(ev: Evidence) -> str:
    conf = int(round(100 * (1 - ev.alpha)))
    lines = [f"| backbone | metric | TG-MATL − | difference [{conf} % CI] | p | p (Holm) | MDE |",
             "|---|---|---|---|---|---|---|"]
    daggers = False
    for c, p_adj in ev.comparisons:
        r = c.result
        mark = " *" if p_adj < ev.alpha else ""
        dagger = r.p_value < ev.alpha and floored(r)
        daggers |= dagger
        lines.append(f"| {c.a[0]} | {METRIC_LABELS[c.metric]} | {_label(c.b[1])} | "
                     f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {_fmt_p(r.p_value)}"
                     f"{' †' if dagger else ''} | {_fmt_p(p_adj)}{mark} | {r.mde(POWER):.3f} |")
    if daggers:
        lines.append("\n†: significant with the training part of the variance at its floor "
                     "(0): the interval rests on the test and seed parts alone, and the fold-to-"
                     "fold estimate of the training part is noisy. Through the pipeline's "
                     "calibration on planted surveys nearly every false positive was of this kind "
                     "(README: calibration); read these rows with care.")
    return "\n".join(lines)


def controls_markdown(ev: Evidence) -> str:
    lines = ["| backbone | " + " | ".join(METRIC_LABELS[m] + " twin 0 − twin 1 (p Holm)"
                                         for m in METRICS) + " | control |",
             "|---|" + "---|" * (len(METRICS) + 1)]
    for b, ctl in ev.controls.items():
        if ctl["verdict"] == "not evaluable":
            lines.append(f"| {b} | " + " | ".join("—" for _ in METRICS)
                         + f" | not evaluable: {ctl['reason']} |")
            continue
        cells = [f"{ctl[m]['diff']:+.3f} ({_fmt_p(ctl[m]['p_holm'])})" for m in METRICS]
        lines.append(f"| {b} | " + " | ".join(cells) + f" | **{ctl['verdict']}** |")
    failed = [b for b, c in ev.controls.items() if c["verdict"] == "fails"]
    if failed:
        lines.append(f"\n**The A/A control fails on {', '.join(failed)}: two trainings of the same "
                     "setup that differ only in their seed came out significantly different, so "
                     "the paired test is not to be trusted on these data.**")
    return "\n".join(lines)


def mde_markdown(ev: Evidence) -> str:
    lines = ["| backbone | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |",
             "|---|" + "---|" * len(METRICS)]
    for b, per in ev.mde.items():
        lines.append(f"| {b} | " + " | ".join("—" if per.get(m) is None else f"{per[m]:.3f}"
                                                for m in METRICS) + " |")
    return "\n".join(lines)


def evidence_markdown(ev: Evidence, n_units: int, resplit: bool, plots_dir: str,
                      twins: int = 1) -> str:
    split = ("the test split redrawn in every repeat: a sample can be tested in one repeat "
             "and trained on in another, so the repeats' standard errors are added at "
             "correlation 1, a bound that costs power (`eval.resplit: false` avoids it)"
             if resplit else
             "one fixed test split, whose sampling is counted")
    seeds = (f"each trained {twins} times with different seeds (twins, averaged; their "
             "differences measure the seed noise)" if twins > 1 else
             "one seed each (seed noise cannot be told from training-set influence and counts "
             "as the latter: conservative)")
    conf = int(round(100 * (1 - ev.alpha)))
    return f"""## Does TG-MATL differ from the other setups? (paired tests)

Each row pairs two setups on the same {n_units} units ({split}), {seeds}. Test samples are
clustered by scene. Difference = TG-MATL minus the named setup; two-sided test
({ev.method}), unadjusted {conf} % interval; `*`: significant at α = {ev.alpha} after Holm's
adjustment within this table. MDE: the difference this comparison would detect with
{int(POWER * 100)} % power.

{comparisons_markdown(ev)}

![paired differences]({plots_dir}/differences.png)

### Minimum detectable effects

The smallest difference against every setup that this run would detect with {int(POWER * 100)} %
power at α = {ev.alpha} (the largest MDE of the backbone's TG-MATL comparisons). An
`inconclusive` verdict says nothing about effects smaller than these.

{mde_markdown(ev)}

### A/A control

TG-MATL's seed twin 0 against its twin 1 through the same test: the true difference is 0, so a
significant control means the test is not calibrated on these data.

{controls_markdown(ev)}

## The paper's findings, checked on this run

Each finding is tested as stated: one-sided where it claims a direction, every part required
(the largest part p), as an equivalence within `eval.margin` where it claims a slight
difference; Holm across all findings and their contraries. The bound is the least favourable
part's unadjusted one-sided {conf} % bound (TOST: its {100 - 2 * (100 - conf)} % interval).
`contradicted`: some part is significantly against the claim. `not evaluable`: this run cannot
judge it (reason given).

{claims_markdown(ev)}

Not tested here: {NOT_TESTED}
"""
