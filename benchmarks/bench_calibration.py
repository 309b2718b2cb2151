"""Calibration of the paired test and of the claims table: false positives, power, oracle power.

Two kinds of simulated data set, both evaluated by the report's own code
(:func:`tgmatl.evaluation.stats.compare`, :func:`tgmatl.evaluation.evidence.verdict_rows`):

``terms`` (default): survey-structured per-sample terms (:mod:`tgmatl.evaluation.simulate`):
scenes (herds) sharing a part of every effect, scene-grouped test split and folds, training-set
influence, seed noise, seed twins. Every configuration: size (demo: 240 targets; survey: 2500)
× clustering (weak: 30 % of an effect shared by a scene; strong: 60 % and twice the scene
size) × ``eval.resplit`` (with a sample's test difficulty and training influence correlated
0.5, so its two roles covary) × metric kind (binary: accuracy; continuous: R²-like). Nulls:

- ``aa``: one setup against itself, another seed (the same training set: its influence
  cancels; the seeds apart, so their noise is independent);
- ``control``: the report's A/A control, twin 0 against twin 1 of one setup;
- ``symmetric``: two different setups of one backbone, equal by symmetry (their training
  influences differ; they share each unit's and twin's seed, and their seed noise correlates
  ``SEED_AGREEMENT`` = 0.8, as CLTL's and MATL's do through the real training: 0.74-0.95);
- ``symmetric_apart``: the same with independent seed noise (two backbones' embeddings);

effect: two related setups of one backbone (agreement 0.8, seed agreement 0.8) with arm 1
shifted to about +0.03. Power is
reported beside an oracle's: a z test that knows the true standard deviation of the
difference (the spread over the configuration's effect data sets). ``claims``: a whole claims
table (3 backbones × 9 setups, every finding) under a global null, its family-wise rate of
wrong verdicts (``holds`` of a directional finding, or ``contradicted``).

``pipeline``: planted surveys through the real training code (``train_setup``: Adam
projections, early stopping, probe heads, retrieval with the query cap, seed twins) for CLTL
and MATL, A/A (another seed) and symmetric (the same setup on two halves of an embedding with
equally strong planted signal). Costly: sized by ``--pipeline-datasets``.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_calibration.py [--n-datasets 300]
        [--jobs 2] [--quick] [--only terms|claims|pipeline] [--out benchmarks/results/...]

Writes ``benchmarks/results/calibration.json``: per configuration and metric ``fpr``,
``power``, ``oracle_power``, ``effect``, ``n_datasets`` and the settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per worker; parallelism is over data sets

import numpy as np  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from scipy import stats as sps  # noqa: E402

from tgmatl.evaluation.simulate import Design, compare_arms, simulate_arms  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 0.05
SIZES = {"demo": dict(n=240, scene_size=2.5), "survey": dict(n=2500, scene_size=5.0)}
CLUSTERING = {"weak": dict(scene_share=0.3, size_factor=1.0),
              "strong": dict(scene_share=0.6, size_factor=2.0)}
SHIFTS = {"binary": 0.08, "continuous": 0.03}  # ~ +0.03 accuracy / +0.03 on the R² scale
# corr of two setups' seed noise in a unit and twin: planted surveys through the real training
# (bench_calibration_pipeline.py, CLTL vs MATL twin deltas) 0.74 accuracy, 0.87 class MAP@R,
# 0.95 box R²
SEED_AGREEMENT = 0.8
NULLS = {"aa": dict(aa=True), "control": dict(aa=True),
         "symmetric": dict(seed_agreement=SEED_AGREEMENT), "symmetric_apart": {}}


def design(size: str, clustering: str, resplit: bool, kind: str, **extra) -> Design:
    s, c = SIZES[size], CLUSTERING[clustering]
    return Design(n=s["n"], scene_size=s["scene_size"] * c["size_factor"],
                  scene_share=c["scene_share"], resplit=resplit, kind=kind,
                  influence_test_corr=0.5, **extra)


def _one(d: Design, seed: int, null: str) -> tuple[float, float, float]:
    """(diff, p, se) of one data set."""
    if null == "control":
        data = simulate_arms(d, seed, arms=1)
        r = compare_arms(data, 0, 0, alpha=ALPHA, twins_a=[0], twins_b=[1])
    else:
        data = simulate_arms(d, seed, arms=2)
        r = compare_arms(data, 1, 0, alpha=ALPHA)
    return r.diff, r.p_value, r.se


def _rate(x: np.ndarray) -> dict[str, float]:
    """Rate with its Wilson 95 % interval."""
    n, k = len(x), float(np.sum(x))
    z = 1.959964
    centre = (k + z * z / 2) / (n + z * z)
    half = z * np.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return {"rate": k / n, "low": centre - half, "high": centre + half}


def run_terms(n_datasets: int, jobs: int, sizes: list[str]) -> list[dict]:
    rows = []
    for size in sizes:
        for clustering in CLUSTERING:
            for resplit in (False, True):
                for kind in ("binary", "continuous"):
                    t0 = time.perf_counter()
                    row: dict = {"size": size, "n": SIZES[size]["n"], "clustering": clustering,
                                 "resplit": resplit, "metric": kind,
                                 "n_datasets": n_datasets}
                    for null, extra in NULLS.items():
                        d = design(size, clustering, resplit, kind, **extra)
                        out = np.array(Parallel(n_jobs=jobs)(
                            delayed(_one)(d, s, null) for s in range(n_datasets)))
                        row[f"fpr_{null}"] = _rate(out[:, 1] < ALPHA)
                        row[f"se_ratio_{null}"] = float(np.sqrt(np.mean(out[:, 2] ** 2))
                                                        / out[:, 0].std())
                    eff = design(size, clustering, resplit, kind, agreement=0.8,
                                 influence_agreement=0.8, shift=SHIFTS[kind],
                                 seed_agreement=SEED_AGREEMENT)
                    out = np.array(Parallel(n_jobs=jobs)(
                        delayed(_one)(eff, 10_000 + s, "effect") for s in range(n_datasets)))
                    sd_true = out[:, 0].std()
                    row["effect"] = float(out[:, 0].mean())
                    row["power"] = _rate(out[:, 1] < ALPHA)
                    row["oracle_power"] = _rate(np.abs(out[:, 0]) > sps.norm.isf(ALPHA / 2)
                                                * sd_true)
                    row["settings"] = {k: v for k, v in dataclasses.asdict(eff).items()
                                       if k not in ("aa",)}
                    row["seconds"] = round(time.perf_counter() - t0, 1)
                    rows.append(row)
                    _print_row(row)
    return rows


def _print_row(row: dict) -> None:
    print(f"{row['size']:6s} {row['clustering']:6s} resplit={row['resplit']!s:5s} "
          f"{row['metric']:10s} fpr aa {row['fpr_aa']['rate']:.3f} control "
          f"{row['fpr_control']['rate']:.3f} symmetric {row['fpr_symmetric']['rate']:.3f} "
          f"apart {row['fpr_symmetric_apart']['rate']:.3f} | "
          f"effect {row['effect']:+.3f} power {row['power']['rate']:.2f} oracle "
          f"{row['oracle_power']['rate']:.2f} | se/sd aa {row['se_ratio_aa']:.2f} sym "
          f"{row['se_ratio_symmetric']:.2f} ({row['seconds']} s)", flush=True)


# --- the whole claims table under a global null -------------------------------------------------
def _claims_errors(d: Design, seed: int) -> tuple[int, int]:
    """(wrong verdicts, evaluable rows) of a claims table of 3 backbones × 9 identical setups."""
    from tgmatl.config import SETUPS
    from tgmatl.evaluation.comparisons import FINDINGS, Comparison, finding_rows
    from tgmatl.evaluation.evidence import verdict_rows

    backbones = ["dinov2", "mae", "clip"]
    cells = [(b, s) for b in backbones for s in SETUPS]
    data = simulate_arms(d, seed, arms=len(cells))
    rows = [r for f in FINDINGS for r in finding_rows(f, backbones, SETUPS)]
    parts = {i: [Comparison(a, b, r.finding.metric,
                            compare_arms(data, cells.index(a), cells.index(b), alpha=ALPHA))
                 for a, b in r.parts] for i, r in enumerate(rows)}
    margins = {"accuracy": 0.02, "r2": 0.03, "class_map_at_r": 0.02, "box_map_at_r": 0.02}
    judged = verdict_rows(rows, parts, margins, ALPHA)
    # under a global null a directional claim is false and 'holds' is wrong; an equivalence
    # claim is true, so only its 'contradicted' is wrong
    wrong = sum(1 for r in judged if r["verdict"] == "contradicted"
                or (r["verdict"] == "holds" and r["kind"] != "within_margin"))
    return int(wrong > 0), len(judged)


def run_claims(n_datasets: int, jobs: int) -> dict:
    d = design("demo", "weak", False, "binary", agreement=0.5, seed_agreement=SEED_AGREEMENT)
    t0 = time.perf_counter()
    out = np.array(Parallel(n_jobs=jobs)(delayed(_claims_errors)(d, s)
                                         for s in range(n_datasets)))
    res = {"fwer": _rate(out[:, 0] > 0), "n_datasets": n_datasets, "rows": int(out[0, 1]),
           "settings": dataclasses.asdict(d), "seconds": round(time.perf_counter() - t0, 1)}
    print(f"claims table, global null: family-wise rate {res['fwer']['rate']:.3f} "
          f"[{res['fwer']['low']:.3f}, {res['fwer']['high']:.3f}] over {n_datasets} tables",
          flush=True)
    return res


def table(result: dict) -> str:
    """The README's markdown table of a calibration JSON."""
    lines = ["| size | herds | resplit | metric | FPR A/A | FPR control | FPR symmetric | "
             "FPR symmetric, seeds apart | effect | power | oracle power | power / oracle |",
             "|---" * 12 + "|"]
    for r in result.get("terms", []):
        ratio = r["power"]["rate"] / r["oracle_power"]["rate"] if r["oracle_power"]["rate"] else 0
        lines.append(
            f"| {r['size']} ({r['n']}) | {r['clustering']} | {str(r['resplit']).lower()} | "
            f"{'accuracy' if r['metric'] == 'binary' else 'R²-like'} | "
            f"{r['fpr_aa']['rate']:.3f} | {r['fpr_control']['rate']:.3f} | "
            f"{r['fpr_symmetric']['rate']:.3f} | {r['fpr_symmetric_apart']['rate']:.3f} | "
            f"{r['effect']:+.3f} | {r['power']['rate']:.2f} | "
            f"{r['oracle_power']['rate']:.2f} | {ratio:.2f} |")
    c = result.get("claims_global_null")
    if c:
        lines.append(f"\nClaims table under a global null ({c['rows']} rows, {c['n_datasets']} "
                     f"tables): family-wise rate {c['fwer']['rate']:.3f} "
                     f"[{c['fwer']['low']:.3f}, {c['fwer']['high']:.3f}].")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-datasets", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="demo size only, 60 data sets")
    ap.add_argument("--only", choices=("terms", "claims", "pipeline"))
    ap.add_argument("--pipeline-datasets", type=int, default=0,
                    help="planted surveys through the real train code per configuration")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calibration.json"))
    ap.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = ap.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.out).read_text())))
        return 0
    n = 60 if args.quick else args.n_datasets
    sizes = ["demo"] if args.quick else list(SIZES)
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {}
    result["alpha"] = ALPHA
    if args.only in (None, "terms"):
        result["terms"] = run_terms(n, args.jobs, sizes)
    if args.only in (None, "claims"):
        result["claims_global_null"] = run_claims(n, args.jobs)
    if args.only == "pipeline" or args.pipeline_datasets:
        from bench_calibration_pipeline import run_pipeline

        result["pipeline"] = run_pipeline(args.pipeline_datasets or 20)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
