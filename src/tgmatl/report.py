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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tgmatl.config import PAPER_SETUPS, SETUP_LABELS, SETUPS, results_file
from tgmatl.errors import InputError
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


def table2_markdown(t2: dict, backbones: Sequence[str], setups: Sequence[str] = SETUPS) -> str:
    """Rows: setups; columns: accuracy and box R² of each backbone (mean ± std, best in bold)."""
    head = ["Setup"] + [f"{b} {m}" for b in backbones for m in ("accuracy", "R²")]
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


def retrieval_markdown(t2: dict, backbones: Sequence[str], setups: Sequence[str] = SETUPS) -> str:
    head = ["Setup"] + [f"{b} {m}" for b in backbones for m in ("class MAP@R", "box MAP@R")]
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
                    leakage: str = "", setups: Sequence[str] = SETUPS) -> str:
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

Mean ± standard deviation over {len(units)} units ({any_result["n_repeats"]} repeat(s) ×
{any_result["n_folds"]} folds), each measured on its test split ({n_test_text} samples); heads:
{heads}. Box R² is the uniform average over the geometry features
({", ".join(any_result["features"])}). Best of each column in bold; whether a difference is
real is the paired tests' business (next section), not the bold's.

{table2_markdown(t2, backbones, setups)}

## Retrieval in the embedding space (MAP@R, test split; WTL: L2-normalised raw embeddings)

{retrieval_markdown(t2, backbones, setups)}

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


# --- plots ------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from tgmatl.io import atomic_path

    with atomic_path(path) as tmp:
        # fixed metadata: the same inputs give the same PNG bytes
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    _plt().close(fig)


def plot_metrics(results: Results, backbones: Sequence[str], path: Path,
                 setups: Sequence[str] = SETUPS) -> None:
    """Accuracy and box R² per setup and backbone: every unit as a dot, mean ± std as a bar."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(backbones))
    colours = plt.get_cmap("tab10")
    for ax, metric, title in zip(axes, ("accuracy", "r2"), ("overall accuracy", "box R²"),
                                 strict=True):
        for j, b in enumerate(backbones):
            for i, s in enumerate(setups):
                vals = np.array([f["test"][metric] for f in results[b, s]["units"]
                                 if f["test"].get(metric) is not None], float)
                x = i - 0.4 + width * (j + 0.5)
                if len(vals):
                    ax.bar(x, vals.mean(), width * 0.9, color=colours(j), alpha=0.35,
                           label=b if i == 0 else None)
                    std = vals.std(ddof=1) if len(vals) > 1 else 0.0
                    ax.errorbar(x, vals.mean(), yerr=std, color=colours(j), capsize=3)
                    jitter = np.linspace(-width * 0.25, width * 0.25, len(vals))
                    ax.scatter(x + jitter, vals, s=9, color=colours(j), zorder=3)
        ax.set_xticks(range(len(setups)), [SETUP_LABELS.get(s, s) for s in setups])
        ax.set_title(f"{title} (test split, units as dots, mean ± std)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_scores(scores: pd.DataFrame, class_names: Sequence[str], path: Path) -> None:
    """Distribution of the relevance score ``s_i`` (``mi.score``) per class: one value per
    sample, its mean over the units in which it is a training sample (the values the selection
    ranks)."""
    plt = _plt()
    train = scores[scores["role"] == "train"]
    per_sample = train.groupby("sample_id", sort=True).agg(
        class_id=("class_id", "first"), score=("score", "mean"))
    data = [per_sample.loc[per_sample["class_id"] == c, "score"].to_numpy(float)
            for c in range(len(class_names))]
    fig, ax = plt.subplots(figsize=(7, 4))
    keep = [i for i, d in enumerate(data) if len(d)]
    ax.boxplot([data[i] for i in keep], showfliers=False)
    ax.set_xticks(range(1, len(keep) + 1), [f"{class_names[i]}\n(n={len(data[i])})" for i in keep])
    for k, i in enumerate(keep):
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(data[i]))
        ax.scatter(k + 1 + jitter, data[i], s=5, alpha=0.4)
    n_units = len(train[["repeat", "fold"]].drop_duplicates())
    ax.set_title(f"relevance score s_i per class (training samples, mean over {n_units} units)")
    ax.set_ylabel("s_i")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_curves(results: Results, backbones: Sequence[str], path: Path,
                setups: Sequence[str] = SETUPS) -> None:
    """Projection training (dashed) and validation (solid) loss per fold of the first repeat;
    dots: best epochs."""
    plt = _plt()
    trained = [s for s in setups if any(f["projection"] for f in results[backbones[0], s]["units"])]
    if not trained:
        trained = list(setups)
    fig, axes = plt.subplots(len(backbones), len(trained), squeeze=False,
                             figsize=(3.4 * len(trained), 2.6 * len(backbones)))
    colours = plt.get_cmap("tab10")
    for r, b in enumerate(backbones):
        for c, s in enumerate(trained):
            ax = axes[r, c]
            for f in results[b, s]["units"]:
                proj = f["projection"]
                if not proj or f["repeat"] != 0:
                    continue
                col = colours(f["fold"] % 10)
                ep = np.arange(1, len(proj["val_loss"]) + 1)
                ax.plot(ep, proj["train_loss"], "--", color=col, lw=0.8, alpha=0.6)
                ax.plot(ep, proj["val_loss"], "-", color=col, lw=1.0)
                best = proj["best_epoch"]
                ax.plot(best, proj["val_loss"][best - 1], "o", color=col, ms=3)
            ax.set_title(f"{b} / {SETUP_LABELS.get(s, s)}", fontsize=9)
            ax.tick_params(labelsize=7)
            if r == len(backbones) - 1:
                ax.set_xlabel("epoch", fontsize=8)
            if c == 0:
                ax.set_ylabel("loss", fontsize=8)
    fig.suptitle("projection loss per fold (repeat 0): train dashed, validation solid (the "
                 "epoch-selection criterion), best epoch dot",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (sign fixed: largest loading positive)."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    if x.shape[0] < 2:
        return np.zeros((x.shape[0], 2))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2]
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    out = x @ (vt * signs[:, None]).T
    return out if out.shape[1] == 2 else np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


def read_test_embeddings(results_dir: str | Path, backbone: str, setup: str) -> pd.DataFrame:
    path = results_file(results_dir, backbone, setup, ".test_embeddings.parquet")
    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise InputError(f"{path}: test embeddings missing (stage train / train_tg)") from None


def plot_embedding_maps(results_dir: str | Path, results: Results, backbones: Sequence[str],
                        by: str, path: Path, setups: Sequence[str] = SETUPS) -> None:
    """PCA map of the first unit's test embeddings, one panel per backbone × setup, coloured by
    ``by`` (``class_id`` or ``box_label``)."""
    plt = _plt()
    fig, axes = plt.subplots(len(backbones), len(setups), squeeze=False,
                             figsize=(2.9 * len(setups), 2.7 * len(backbones)))
    colours = plt.get_cmap("tab10")
    for r, b in enumerate(backbones):
        for c, s in enumerate(setups):
            ax = axes[r, c]
            df = read_test_embeddings(results_dir, b, s)
            xy = pca_2d(np.stack(df["embedding"].to_numpy()))
            labels = df[by].to_numpy()
            names = results[b, s]["classes"] if by == "class_id" else None
            for k in np.unique(labels):
                sel = labels == k
                name = names[int(k)] if names else f"box {int(k)}"
                ax.scatter(xy[sel, 0], xy[sel, 1], s=6, color=colours(int(k) % 10), label=name)
            ax.set_title(f"{b} / {SETUP_LABELS.get(s, s)}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and c == 0:
                ax.legend(fontsize=7, markerscale=2)
    what = "class" if by == "class_id" else "box label"
    fig.suptitle(f"PCA of the test embeddings (repeat 0, fold 0), coloured by {what}",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


# --- the stage ----------------------------------------------------------------------------------
def run_report(*, results_dir: str | Path, scores: str | Path, mi: str | Path,
               metrics_out: str | Path, plots_dir: str | Path, report_out: str | Path,
               backbones: Sequence[str], eval_params, claims_out: str | Path,
               comparisons_out: str | Path, split: pd.DataFrame, leakage: dict | None = None,
               setups: Sequence[str] = SETUPS) -> dict:
    """Write ``table2.json``, ``comparisons.json``, ``claims.json``, ``report.md`` and the PNG
    plots; returns the Table II dict."""
    from tgmatl.evidence import (
        build_evidence,
        claims_json,
        comparisons_json,
        evidence_markdown,
        plot_differences,
    )
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
    ev = build_evidence(results_dir, results, backbones, setups, eval_params, split)
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
    evidence = evidence_markdown(ev, n_units, eval_params.resplit, rel.as_posix())
    write_text(report_out, report_markdown(results, t2, mi_data, backbones, rel.as_posix(),
                                           mi_source=str(mi), evidence=evidence,
                                           leakage=leakage_markdown(leakage or {}),
                                           setups=setups))
    write_json(metrics_out, t2)
    write_json(comparisons_out, comparisons_json(ev))
    write_json(claims_out, claims_json(ev))
    return t2
