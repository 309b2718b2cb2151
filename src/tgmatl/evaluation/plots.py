"""The report's plots: matplotlib PNGs rendered offline (DVC's own plot HTML loads vega from a
CDN and stays blank offline), written atomically with fixed metadata so the same inputs give the
same bytes. :func:`pyplot` and :func:`save_figure` are the helpers every plot here uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tgmatl.config import SETUP_LABELS, SETUPS, results_file
from tgmatl.errors import InputError
from tgmatl.evaluation.comparisons import METRIC_LABELS, METRICS
from tgmatl.io import atomic_path

Results = dict[tuple[str, str], dict[str, Any]]


# --- plots ------------------------------------------------------------------------------------
def pyplot():
    """matplotlib's pyplot on the Agg backend (offline PNGs, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write ``fig`` to ``path`` as PNG atomically, with fixed metadata, and close it."""
    with atomic_path(path) as tmp:
        # fixed metadata: the same inputs give the same PNG bytes
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    pyplot().close(fig)


def _unit_values(rows: Sequence[dict], metric: str) -> list[float | None]:
    """A metric per (repeat, fold) unit: the mean over its seed twins (``twin`` rows)."""
    by_unit: dict[tuple[int, int], list[float]] = {}
    for f in rows:
        v = f["test"].get(metric)
        by_unit.setdefault((f["repeat"], f["fold"]), []).extend([] if v is None else [v])
    return [float(np.mean(v)) if v else None for v in by_unit.values()]


def plot_metrics(results: Results, backbones: Sequence[str], path: Path,
                 setups: Sequence[str] = SETUPS) -> None:
    """Accuracy and box R² per setup and backbone: every unit as a dot, mean ± std as a bar."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / max(1, len(backbones))
    colours = plt.get_cmap("tab10")
    for ax, metric, title in zip(axes, ("accuracy", "r2"), ("overall accuracy", "box R²"),
                                 strict=True):
        for j, b in enumerate(backbones):
            for i, s in enumerate(setups):
                vals = np.array([v for v in _unit_values(results[b, s]["units"], metric)
                                 if v is not None], float)
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
    save_figure(fig, path)


def plot_scores(scores: pd.DataFrame, class_names: Sequence[str], path: Path) -> None:
    """Distribution of the relevance score ``s_i`` (``mi.score``) per class: one value per
    sample, its mean over the units in which it is a training sample (the values the selection
    ranks)."""
    plt = pyplot()
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
    save_figure(fig, path)


def plot_curves(results: Results, backbones: Sequence[str], path: Path,
                setups: Sequence[str] = SETUPS) -> None:
    """Projection training (dashed) and validation (solid) loss per fold of the first repeat;
    dots: best epochs."""
    plt = pyplot()
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
                if not proj or f["repeat"] != 0 or f.get("twin", 0) != 0:
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
    save_figure(fig, path)


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
    plt = pyplot()
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
    save_figure(fig, path)


# --- evidence ----------------------------------------------------------------------------------
def plot_differences(ev, path: Path) -> None:
    """One panel per metric: TG-MATL minus each setup, per backbone, with its CI."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.8), sharey=True)
    colours = plt.get_cmap("tab10")
    backbones = list(dict.fromkeys(c.a[0] for c, _ in ev.comparisons))
    others = list(dict.fromkeys(c.b[1] for c, _ in ev.comparisons))
    for ax, metric in zip(np.atleast_1d(axes), METRICS, strict=True):
        for c, p_adj in ev.comparisons:
            if c.metric != metric:
                continue
            j, i = backbones.index(c.a[0]), others.index(c.b[1])
            y = i + (j - (len(backbones) - 1) / 2) * 0.22
            r = c.result
            ax.errorbar(r.diff, y, xerr=[[r.diff - r.ci_low], [r.ci_high - r.diff]], fmt="o",
                        color=colours(j), ms=4, capsize=2,
                        mfc=colours(j) if p_adj < ev.alpha else "white",
                        label=c.a[0] if i == 0 else None)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{METRIC_LABELS[metric]}: TG-MATL − setup", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_yticks(range(len(others)), [SETUP_LABELS.get(s, s) for s in others])
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(f"paired differences with {int(round(100 * (1 - ev.alpha)))} % CIs "
                 f"(filled: significant after Holm)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
