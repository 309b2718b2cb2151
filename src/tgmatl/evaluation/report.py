"""Stage `report`: Table II as metrics JSON and markdown, and the plots (PNG, rendered offline).

Inputs: ``results/<backbone>/{train,tg}/<setup>.json`` (and ``.test_embeddings.parquet``,
``.predictions.parquet``) for every configured backbone and setup, ``scores.parquet`` (score
distribution per class) and the Table I JSON of the ``score`` stage. DVC's own plot HTML loads
vega from a CDN and stays blank offline, so every plot is a matplotlib PNG (listed under
``plots:`` in dvc.yaml, which DVC shows as images).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tgmatl.config import PAPER_SETUPS, SETUP_LABELS, SETUPS, results_file
from tgmatl.errors import InputError
from tgmatl.evaluation.evidence import (
    build_evidence,
    claims_json,
    comparisons_json,
    evidence_markdown,
)
from tgmatl.evaluation.plots import (
    plot_curves,
    plot_differences,
    plot_embedding_maps,
    plot_metrics,
    plot_scores,
)
from tgmatl.versions import software_markdown

# Scalars of every unit's test metrics that go into table2.json (mean and std over units).
TABLE_METRICS = ("accuracy", "f1_macro", "r2", "mse", "class_p_at_1", "class_map_at_r",
                 "box_p_at_1", "box_map_at_r")
PLOT_FILES = ("metrics.png", "differences.png", "scores.png", "curves.png",
              "embeddings_class.png", "embeddings_box.png")

Results = dict[tuple[str, str], dict[str, Any]]


# --- reading ----------------------------------------------------------------------------------
def read_results(results_dir: str | Path, backbones: Sequence[str],
                 setups: Sequence[str] = SETUPS) -> Results:
    """Every ``results/<backbone>/<setup>.json``; a missing or unreadable one is an error."""
    out: Results = {}
    for b in backbones:
        for s in setups:
            path = results_file(results_dir, b, s)
            try:
                data = json.loads(path.read_text())
            except FileNotFoundError:
                raise InputError(f"{path}: results missing (stage train / train_tg)") from None
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}: not valid JSON: {exc}") from None
            if not isinstance(data, dict) or "summary" not in data or "units" not in data:
                raise InputError(f"{path}: no 'summary' / 'units' (not a results file; rerun "
                                 f"the train stages)")
            out[b, s] = data
    return out


# --- tables -----------------------------------------------------------------------------------
def table2(results: Results) -> dict[str, dict[str, dict[str, float | None]]]:
    """``{backbone: {setup: {<metric>_mean, <metric>_std}}}``; DVC shows the keys as
    ``dinov2.tg_matl.accuracy_mean``."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for (b, s), data in results.items():
        summary = data["summary"]
        row = {}
        for m in TABLE_METRICS:
            for stat in ("mean", "std"):
                key = f"{m}_{stat}"
                if key not in summary:
                    raise InputError(f"results {b}/{s}: summary has no {key}")
                row[key] = summary[key]
        out.setdefault(b, {})[s] = row
    return out


def _label(setup: str) -> str:
    """The setup's row label; † marks a setup that is not in the paper."""
    return SETUP_LABELS.get(setup, setup) + ("" if setup in PAPER_SETUPS else " †")


def _pm(row: dict[str, Any], metric: str) -> str:
    mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
    if mean is None:
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def _best(values: dict[str, float | None]) -> set[str]:
    """The keys with the highest value as printed (3 decimals), ties included."""
    known = {k: round(v, 3) for k, v in values.items() if v is not None}
    top = max(known.values(), default=None)
    return {k for k, v in known.items() if v == top}


def _column(backbone: str, labels: Mapping[str, str] | None) -> str:
    """A backbone's column name, with its label when it has one (issue 17: the classical
    baseline reads "classical (not a ViT: offline baseline)")."""
    label = (labels or {}).get(backbone)
    return f"{backbone} ({label})" if label else backbone


def table2_markdown(t2: dict, backbones: Sequence[str], setups: Sequence[str] = SETUPS,
                    labels: Mapping[str, str] | None = None) -> str:
    """Rows: setups; columns: accuracy and box R² of each backbone (mean ± std, best in bold)."""
    head = ["Setup"] + [f"{_column(b, labels)} {m}" for b in backbones for m in ("accuracy", "R²")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {(b, m): _best({s: t2[b][s][f"{m}_mean"] for s in setups})
            for b in backbones for m in ("accuracy", "r2")}
    for s in setups:
        cells = [_label(s)]
        for b in backbones:
            for m in ("accuracy", "r2"):
                text = _pm(t2[b][s], m)
                cells.append(f"**{text}**" if s in best[b, m] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def retrieval_markdown(t2: dict, backbones: Sequence[str], setups: Sequence[str] = SETUPS,
                       labels: Mapping[str, str] | None = None) -> str:
    head = ["Setup"] + [f"{_column(b, labels)} {m}" for b in backbones
                        for m in ("class MAP@R", "box MAP@R")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in setups:
        cells = [_label(s)]
        for b in backbones:
            cells += [_pm(t2[b][s], "class_map_at_r"), _pm(t2[b][s], "box_map_at_r")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


SCORE_KINDS = {
    "eq5": "Eq. 5, s_i = Σ_k I(x̃_k; y)·x̃_ik",
    "pointwise": "pointwise MI, each sample's k-NN term of I(joint geometry; class)",
}


def table1_markdown(mi: dict, source: str = "mi.json") -> str:
    """Table I (per-class relevance scores) and the features' MI, from the score stage's JSON.

    ``score_kind`` (``mi.score``) names the score; files written before it existed are Eq. 5.
    """
    try:
        features = mi["mi"]
        stats = mi["score"]
        kind = mi.get("score_kind", "eq5")
        lines = ["| feature | I(x̃; y) |", "|---|---|"]
        lines += [f"| {k} | {float(v):.4f} |" for k, v in features.items()]
        if "joint_mi" in mi:
            lines.append(f"| joint geometry | {float(mi['joint_mi']):.4f} |")
        lines += ["", f"Relevance score: {SCORE_KINDS[kind]} (`mi.score: {kind}`).", ""]
        lines += ["| class | count | mean | std | min | max |", "|---|---|---|---|---|---|"]
        for name, st in stats.items():
            std = "–" if st["std"] is None else f"{st['std']:.3f}"
            lines.append(f"| {name} | {int(st['count'])} | {st['mean']:.3f} | {std} | "
                         f"{st['min']:.3f} | {st['max']:.3f} |")
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{source}: not a Table I JSON (mi, score.<class>.count/mean/...): "
                         f"{exc!r}") from None
    return "\n".join(lines)


def leakage_markdown(leak: dict) -> str:
    """How many test samples share an image or a scene with a training sample (split stage)."""
    if not leak:
        return ""
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v:.2f} |" if isinstance(v, float) else
                     f"| {k.replace('_', ' ')} | {v} |" for k, v in leak.items())
    return f"""## Leakage through shared images and scenes (mean over units)

| quantity | value |
|---|---|
{rows}

Retrieval metrics never count a reference from the query's own image.
"""


def report_markdown(results: Results, t2: dict, mi: dict, backbones: Sequence[str],
                    plots_dir: str, mi_source: str = "mi.json", evidence: str = "",
                    leakage: str = "", setups: Sequence[str] = SETUPS,
                    labels: Mapping[str, str] | None = None) -> str:
    any_result = next(iter(results.values()))
    units = any_result["units"]
    n_test = sorted({u["n_test"] for u in units})
    n_test_text = str(n_test[0]) if len(n_test) == 1 else f"{n_test[0]}–{n_test[-1]}"
    plots = "\n".join(f"![{p}]({plots_dir}/{p})" for p in PLOT_FILES
                      if not (evidence and p == "differences.png"))
    heads = {"probe": "scikit-learn probes (logistic / ridge regression, L2 by inner CV)",
             "mlp": "the paper's Adam-trained heads"}.get(any_result.get("heads"), "task heads")
    return f"""# TG-MATL report (generated by the `report` stage)

## Table II: task heads on the (projected) embeddings

Mean ± standard deviation over {any_result.get("n_units", len(units))} units
({any_result["n_repeats"]} repeat(s) × {any_result["n_folds"]} folds; a unit's value is the mean
of its {any_result.get("twins", 1)} seed twin(s)), each measured on its test split
({n_test_text} samples); heads:
{heads}. Box R² is the uniform average over the geometry features
({", ".join(any_result["features"])}). Best of each column in bold; whether a difference is
real is the paired tests' business (next section), not the bold's.

{table2_markdown(t2, backbones, setups, labels)}

## Retrieval in the embedding space (MAP@R, test split; WTL: L2-normalised raw embeddings)

{retrieval_markdown(t2, backbones, setups, labels)}

{evidence}
{leakage}
## Table I: mutual information and per-sample relevance scores (all samples)

{table1_markdown(mi, mi_source)}

## Software

Versions the results were computed with (recorded by each `train` stage; `python -m
tgmatl.versions` prints the current environment):

{software_markdown(r.get("environment") for r in results.values())}

## Plots

{plots}
"""


# --- the stage ----------------------------------------------------------------------------------
def run_report(*, results_dir: str | Path, scores: str | Path, mi: str | Path,
               metrics_out: str | Path, plots_dir: str | Path, report_out: str | Path,
               backbones: Sequence[str], eval_params, claims_out: str | Path,
               comparisons_out: str | Path, split: pd.DataFrame,
               scenes: Mapping[Any, Any] | None = None, leakage: dict | None = None,
               setups: Sequence[str] = SETUPS, labels: Mapping[str, str] | None = None) -> dict:
    """Write ``table2.json``, ``comparisons.json``, ``claims.json``, ``report.md`` and the PNG
    plots; returns the Table II dict. ``labels``: a note per backbone for report.md's column
    names (the classical baseline's "not a ViT: offline baseline")."""
    from tgmatl.io import atomic_dir, write_json, write_text

    backbones = list(backbones)
    results = read_results(results_dir, backbones, setups)
    t2 = table2(results)
    try:
        mi_data = json.loads(Path(mi).read_text())
    except (FileNotFoundError, json.JSONDecodeError) as exc:
        raise InputError(f"{mi}: cannot read Table I JSON: {exc}") from None
    try:
        sc = pd.read_parquet(scores, columns=["repeat", "fold", "sample_id", "role", "class_id",
                                              "score"])
    except (FileNotFoundError, KeyError, ValueError) as exc:
        raise InputError(f"{scores}: cannot read repeat, fold, sample_id, role, class_id, score: "
                         f"{exc}") from None
    ev = build_evidence(results_dir, results, backbones, setups, eval_params, split, scenes)
    classes = next(iter(results.values()))["classes"]
    with atomic_dir(plots_dir) as tmp:
        plot_metrics(results, backbones, tmp / "metrics.png", setups)
        plot_differences(ev, tmp / "differences.png")
        plot_scores(sc, classes, tmp / "scores.png")
        plot_curves(results, backbones, tmp / "curves.png", setups)
        plot_embedding_maps(results_dir, results, backbones, "class_id",
                            tmp / "embeddings_class.png", setups)
        plot_embedding_maps(results_dir, results, backbones, "box_label",
                            tmp / "embeddings_box.png", setups)
    # image links relative to report.md
    rel = Path(os.path.relpath(Path(plots_dir).resolve(), Path(report_out).resolve().parent))
    n_units = next(iter(results.values()))["n_units"]
    twins = int(next(iter(results.values())).get("twins", 1))
    evidence = evidence_markdown(ev, n_units, eval_params.resplit, rel.as_posix(), twins)
    write_text(report_out, report_markdown(results, t2, mi_data, backbones, rel.as_posix(),
                                           mi_source=str(mi), evidence=evidence,
                                           leakage=leakage_markdown(leakage or {}),
                                           setups=setups, labels=labels))
    write_json(metrics_out, t2)
    write_json(comparisons_out, comparisons_json(ev))
    write_json(claims_out, claims_json(ev))
    return t2
