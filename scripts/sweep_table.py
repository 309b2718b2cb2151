"""Turn a finished `dvc exp` sweep over sampling.top_pct × sampling.random_pct into the paper's
top × random table (markdown) and a heatmap (PNG).

    dvc exp show --json > sweep.json
    .venv/bin/python scripts/sweep_table.py sweep.json --backbone clip \\
        --out sweep.md --plot sweep.png

Reads every experiment (and the baseline commits; not the workspace, whose metrics may be stale)
of ``dvc exp show --json`` that has ``metrics/table2.json``; failed or still queued experiments
are skipped and counted. Rows are ``top_pct``, columns ``random_pct``; each cell holds the chosen
metrics of ``<backbone>.tg_matl`` (mean ± std over folds). Two experiments at the same grid point
must agree (the pipeline is deterministic); if they do not, the script stops and names them.
All of them must come from one baseline commit (experiments pulled from several machines
included): a sweep compares sampling values under one commit's code and other params, so output
of ``dvc exp show -A`` or ``-n 2`` spanning several commits stops the script, naming them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

METRIC_LABELS = {"accuracy": "accuracy", "r2": "box R²", "f1_macro": "macro F1",
                 "class_map_at_r": "class MAP@R", "box_map_at_r": "box MAP@R"}


def _states(rows: list[dict]) -> Iterator[tuple[str, str, dict, dict | None]]:
    """(baseline, name, ExpState, executor) for every row and every experiment under it; the
    baseline names the row's commit (its branch or tag, and the short sha)."""
    for row in rows:
        base = row["rev"][:7] if not row.get("name") else f"{row['name']} ({row['rev'][:7]})"
        yield base, row.get("name") or row["rev"], row, None
        for exp_range in row.get("experiments") or []:
            for state in exp_range.get("revs") or []:
                name = exp_range.get("name") or state.get("name") or state["rev"]
                yield base, name, state, exp_range.get("executor")


def _table2(data: dict) -> dict | None:
    for path, entry in (data.get("metrics") or {}).items():
        if path.endswith("table2.json") and isinstance(entry, dict) and "data" in entry:
            return entry["data"]
    return None


def _sampling(data: dict) -> dict | None:
    for path, entry in (data.get("params") or {}).items():
        if path.endswith("params.yaml") and isinstance(entry, dict):
            return (entry.get("data") or {}).get("sampling")
    return None


def collect(rows: list[dict], backbone: str, setup: str = "tg_matl"
            ) -> tuple[dict[tuple[float, float], dict[str, Any]], dict[str, int]]:
    """``{(top_pct, random_pct): table2[backbone][setup]}`` and counts of skipped rows."""
    found: list[tuple[str, str, tuple[float, float], dict[str, Any]]] = []
    skipped = {"failed": 0, "queued or running": 0, "no metrics": 0}
    for base, name, state, executor in _states(rows):
        if state.get("rev") == "workspace":  # may hold params not yet reproduced
            continue
        status = (executor or {}).get("state")
        if status in ("queued", "running"):
            skipped["queued or running"] += 1
            continue
        if status == "failed" or state.get("error"):
            skipped["failed"] += 1
            continue
        data = state.get("data") or {}
        t2, sampling = _table2(data), _sampling(data)
        if t2 is None or sampling is None or setup not in t2.get(backbone, {}):
            skipped["no metrics"] += 1
            continue
        key = (float(sampling["top_pct"]), float(sampling["random_pct"]))
        found.append((base, name, key, t2[backbone][setup]))
    # before the per-point check: across commits a disagreement is expected, not a bug
    baselines = Counter(base for base, *_ in found)
    if len(baselines) > 1:
        counts = ", ".join(f"{b}: {n}" for b, n in baselines.items())
        raise SystemExit(f"sweep_table: results of {len(baselines)} baseline commits ({counts} "
                         "with metrics); their code or params may differ, so give one at a "
                         "time: dvc exp show --rev <commit> --json")
    grid: dict[tuple[float, float], dict[str, Any]] = {}
    names: dict[tuple[float, float], str] = {}
    for _, name, key, values in found:
        if key in grid and grid[key] != values:
            raise SystemExit(f"sweep_table: {names[key]} and {name} share top_pct={key[0]}, "
                             f"random_pct={key[1]} but report different metrics")
        grid.setdefault(key, values)
        names.setdefault(key, name)
    return grid, skipped


def _cell(values: dict[str, Any] | None, metric: str) -> str:
    if not values or values.get(f"{metric}_mean") is None:
        return "–"
    mean, std = values[f"{metric}_mean"], values.get(f"{metric}_std")
    return f"{mean:.3f} ± {std:.3f}" if std is not None else f"{mean:.3f}"


def markdown(grid: dict, metrics: list[str], backbone: str) -> str:
    tops = sorted({k[0] for k in grid})
    rands = sorted({k[1] for k in grid})
    parts = []
    for m in metrics:
        label = METRIC_LABELS.get(m, m)
        head = ["top \\ random"] + [f"{r:g}" for r in rands]
        lines = [f"**{backbone} TG-MATL {label}** (rows: sampling.top_pct, columns: "
                 f"sampling.random_pct; mean ± std over folds)", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in tops:
            lines.append("| " + " | ".join([f"{t:g}"] + [_cell(grid.get((t, r)), m)
                                               for r in rands]) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def heatmap(grid: dict, metrics: list[str], backbone: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from tgmatl.io import atomic_path

    tops = sorted({k[0] for k in grid})
    rands = sorted({k[1] for k in grid})
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
    for ax, m in zip(axes[0], metrics, strict=True):
        z = np.full((len(tops), len(rands)), np.nan)
        for i, t in enumerate(tops):
            for j, r in enumerate(rands):
                v = (grid.get((t, r)) or {}).get(f"{m}_mean")
                if v is not None:
                    z[i, j] = v
        im = ax.imshow(z, origin="lower", cmap="viridis", aspect="auto")
        for i in range(len(tops)):
            for j in range(len(rands)):
                if np.isfinite(z[i, j]):
                    bright = im.norm(z[i, j]) > 0.6  # viridis turns yellow: dark text there
                    ax.text(j, i, f"{z[i, j]:.3f}", ha="center", va="center", fontsize=9,
                            color="black" if bright else "white")
        ax.set_xticks(range(len(rands)), [f"{r:g}" for r in rands])
        ax.set_yticks(range(len(tops)), [f"{t:g}" for t in tops])
        ax.set_xlabel("sampling.random_pct")
        ax.set_ylabel("sampling.top_pct")
        ax.set_title(f"{backbone} TG-MATL {METRIC_LABELS.get(m, m)}")
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="output of `dvc exp show --json` ('-' for stdin)")
    ap.add_argument("--backbone", default="clip", help="backbone of the table (paper: clip)")
    ap.add_argument("--metrics", nargs="+", default=["accuracy", "r2"],
                    help="table2 metrics (without _mean/_std)")
    ap.add_argument("--out", help="write the markdown here (default: print it)")
    ap.add_argument("--plot", help="heatmap PNG to write")
    args = ap.parse_args(argv)
    text = sys.stdin.read() if args.json == "-" else Path(args.json).read_text()
    rows = json.loads(text)
    grid, skipped = collect(rows, args.backbone)
    if not grid:
        raise SystemExit(f"sweep_table: no experiment with metrics for {args.backbone}.tg_matl "
                         f"({skipped})")
    md = markdown(grid, args.metrics, args.backbone)
    if args.out:
        from tgmatl.io import write_text

        write_text(args.out, md)
    else:
        print(md, end="")
    if args.plot:
        heatmap(grid, args.metrics, args.backbone, Path(args.plot))
    counts = ", ".join(f"{v} {k}" for k, v in skipped.items() if v)
    print(f"sweep_table: {len(grid)} grid points" + (f"; skipped {counts}" if counts else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
