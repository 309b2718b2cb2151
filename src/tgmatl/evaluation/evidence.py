"""The report's evidence: TG-MATL against every other setup, and the paper's findings as
verdicts (``metrics/comparisons.json``, ``metrics/claims.json``, report section, plot).

Units and intervals (see :mod:`tgmatl.evaluation.stats` for the variance each interval holds): every
comparison pairs two (backbone, setup) cells on the same (repeat, fold) units and test
samples. p-values are two-sided; "Holm" adjusts them within one table (the TG-MATL table of a
run, or the claims table).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
    compare,
    finding_parts,
    read_predictions,
    unit_memberships,
    verdict,
)
from tgmatl.evaluation.stats import holm

REFERENCE = "tg_matl"


@dataclass
class Evidence:
    comparisons: list[tuple[Comparison, float]]          # (comparison, Holm-adjusted p)
    claims: list[dict[str, Any]]                          # one row per finding × backbone
    alpha: float
    method: str


def _r(v: float, digits: int = 6) -> float | None:
    v = float(v)
    return round(v, digits) if np.isfinite(v) else None


def build_evidence(results_dir: str | Path, results: dict, backbones: Sequence[str],
                   setups: Sequence[str], ev: EvalParams, split: pd.DataFrame) -> Evidence:
    """Every TG-MATL comparison and every finding's verdict of one run (``split``: the long
    split table the units came from)."""
    backbones = list(backbones)
    features = list(next(iter(results.values()))["features"])
    train_ids = unit_memberships(split)
    cells = [(b, s) for b in backbones for s in setups]
    preds = read_predictions(results_dir, cells)
    cache: dict[tuple[Cell, Cell, str], Comparison] = {}

    def get(a: Cell, b: Cell, metric: str) -> Comparison:
        key = (a, b, metric)
        if key not in cache:
            cache[key] = compare(preds, a, b, metric, features, train_ids, alpha=ev.alpha)
        return cache[key]

    table = [get((b, REFERENCE), (b, s), m) for b in backbones for m in METRICS
             for s in setups if s != REFERENCE] if REFERENCE in setups else []
    adjusted = holm([c.result.p_value for c in table]) if table else np.array([])

    # the findings: Holm over every part of every row, then an intersection-union verdict
    rows: list[tuple[Any, str, list[Comparison]]] = []
    for f in FINDINGS:
        needed = {s for pair in f.pairs for s in pair} | (
            {f.best_backbone[0]} if f.best_backbone else set())
        if not needed <= set(setups):
            continue
        parts: dict[str, list[Comparison]] = {}
        for row, a, b in finding_parts(f, backbones):
            parts.setdefault(row, []).append(get(a, b, f.metric))
        rows += [(f, row, comps) for row, comps in parts.items()]
    flat = [c for _, _, comps in rows for c in comps]
    adj = iter(holm([c.result.p_value for c in flat])) if flat else iter(())
    claims = []
    for f, row, comps in rows:
        p_adj = [next(adj) for _ in comps]
        diffs = [c.result.diff for c in comps]
        worst = int(np.argmin(diffs))
        c = comps[worst]
        claims.append({
            "backbone": row, "key": f.key, "text": f.text, "metric": f.metric,
            "comparison": " and ".join(f"{_cell(x.a)} > {_cell(x.b)}" for x in comps),
            "diff": c.result.diff, "ci_low": c.result.ci_low, "ci_high": c.result.ci_high,
            "p_holm": float(max(p_adj)), "verdict": verdict(diffs, p_adj, ev.alpha),
            "least_favourable": f"{_cell(c.a)} − {_cell(c.b)}",
        })
    method = table[0].result.method if table else (flat[0].result.method if flat else "")
    return Evidence(list(zip(table, adjusted, strict=True)), claims, ev.alpha, method)


def _label(setup: str) -> str:
    return SETUP_LABELS.get(setup, setup)


def _cell(c: Cell) -> str:
    return f"{_label(c[1])} [{c[0]}]"


# --- metrics JSON ------------------------------------------------------------------------------
def comparisons_json(ev: Evidence) -> dict:
    """``{backbone: {vs_<setup>: {<metric>_diff, _ci_low, _ci_high, _p, _p_holm}}}``."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for c, p_adj in ev.comparisons:
        row = out.setdefault(c.a[0], {}).setdefault(f"vs_{c.b[1]}", {})
        r = c.result
        row.update({f"{c.metric}_diff": _r(r.diff), f"{c.metric}_ci_low": _r(r.ci_low),
                    f"{c.metric}_ci_high": _r(r.ci_high), f"{c.metric}_p": _r(r.p_value),
                    f"{c.metric}_p_holm": _r(p_adj)})
    return out


def claims_json(ev: Evidence) -> dict:
    """``{backbone: {<finding>: {diff, ci_low, ci_high, p_holm, verdict}}}`` (shallow keys)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for c in ev.claims:
        out.setdefault(c["backbone"], {})[c["key"]] = {
            "diff": _r(c["diff"]), "ci_low": _r(c["ci_low"]), "ci_high": _r(c["ci_high"]),
            "p_holm": _r(c["p_holm"]), "verdict": c["verdict"]}
    return out


# --- markdown ----------------------------------------------------------------------------------
def _fmt_p(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def claims_markdown(ev: Evidence) -> str:
    conf = int(round(100 * (1 - ev.alpha)))
    lines = [f"| finding | backbone | comparison | difference [{conf} % CI] | p (Holm) | "
             f"verdict |", "|---|---|---|---|---|---|"]
    for c in ev.claims:
        lines.append(f"| {c['text']} | {c['backbone']} | {c['comparison']} | "
                     f"{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | "
                     f"{_fmt_p(c['p_holm'])} | **{c['verdict']}** |")
    return "\n".join(lines)


def comparisons_markdown(ev: Evidence) -> str:
    conf = int(round(100 * (1 - ev.alpha)))
    lines = [f"| backbone | metric | TG-MATL − | difference [{conf} % CI] | p | p (Holm) |",
             "|---|---|---|---|---|---|"]
    for c, p_adj in ev.comparisons:
        r = c.result
        mark = " *" if p_adj < ev.alpha else ""
        lines.append(f"| {c.a[0]} | {METRIC_LABELS[c.metric]} | {_label(c.b[1])} | "
                     f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {_fmt_p(r.p_value)} "
                     f"| {_fmt_p(p_adj)}{mark} |")
    return "\n".join(lines)


def evidence_markdown(ev: Evidence, n_units: int, resplit: bool, plots_dir: str) -> str:
    split = ("the test split redrawn in every repeat" if resplit else
             "one fixed test split (its sampling is counted too)")
    return f"""## Does TG-MATL differ from the other setups? (paired tests)

Each row pairs two setups on the same {n_units} units ({split}); difference = TG-MATL minus the
named setup; two-sided test: {ev.method}. `*`: significant at α = {ev.alpha} after Holm's
adjustment within this table.

{comparisons_markdown(ev)}

![paired differences]({plots_dir}/differences.png)

## The paper's findings, checked on this run

`holds`: every comparison the finding makes is significant in the claimed direction (Holm
within this table; a finding of several comparisons reports its least favourable one);
`contradicted`: one is significant against it; else `inconclusive`. Not checked here:
{NOT_TESTED}

{claims_markdown(ev) if ev.claims else "(no finding applies to the configured setups)"}
"""
