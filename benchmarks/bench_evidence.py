"""Time a full evidence run and print its Table II, paired tests and verdicts.

A full evidence run is the protocol's training and statistics: every backbone × setup × unit
(``eval.repeats`` × ``split.folds``), then the paired tests and the findings' verdicts. It runs
in one process, stage by stage as the pipeline does (split, score, select, train, report), on

- ``--source planted`` (default): three planted-signal "backbones" (``tgmatl.planted``: class
  and box geometry mixed with noise, at three signal strengths) on a survey of the demo's size,
  so that the numbers mean something;
- ``--source demo``: the demo pipeline's own samples and embeddings (run ``make repro`` first).

    .venv/bin/python benchmarks/bench_evidence.py                   # 3 backbones, paper's five
    .venv/bin/python benchmarks/bench_evidence.py --setups all      # and the four beyond it
    .venv/bin/python benchmarks/bench_evidence.py --repeats 2 --source demo

Prints the wall time of every phase and of each setup (summed over backbones), Table II and the
TG-MATL comparisons with their verdicts; ``--out`` keeps the run's folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tgmatl.config import (  # noqa: E402
    PAPER_SETUPS,
    SETUPS,
    EvalParams,
    GeometryParams,
    HeadsParams,
    MIParams,
    SamplingParams,
    SplitParams,
    TrainParams,
)
from tgmatl.params import load_params, read_section, read_seed  # noqa: E402

# planted "backbones": (class signal, geometry signal, seed) — weak, medium and strong encoders
PLANTED = {"weak": (0.8, 0.8, 11), "medium": (1.1, 1.1, 12), "strong": (1.5, 1.5, 13)}


def planted_inputs(root: Path, dim: int, seed: int) -> tuple[Path, dict[str, Path]]:
    """One planted survey (boxes, classes, scenes: the survey's ``seed``) seen by three
    "encoders" of different signal strength, each in its own random basis."""
    from tgmatl.io import write_parquet
    from tgmatl.planted import embeddings_table, planted_survey

    samples = None
    paths = {}
    for name, (cs, gs, s) in PLANTED.items():
        sv = planted_survey(240, class_names=("cow", "deer", "horse"), dim=dim, class_signal=cs,
                            geometry_signal=gs, n_scenes=96, mixed_scene_fraction=0.4,
                            shared_image_fraction=0.3, seed=seed)
        q, _ = np.linalg.qr(np.random.default_rng(s).standard_normal((dim, dim)))
        x = (sv.embeddings @ q).astype(np.float32)
        samples = sv.samples
        paths[name] = root / f"{name}.parquet"
        write_parquet(paths[name], embeddings_table(samples["sample_id"], x))
    write_parquet(root / "samples.parquet", samples)
    return root / "samples.parquet", paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", choices=("planted", "demo"), default="planted")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--setups", default="paper", help="paper | all | a comma-separated list")
    ap.add_argument("--dim", type=int, default=64, help="planted embedding width")
    ap.add_argument("--out", help="keep the run's files here")
    args = ap.parse_args(argv)

    from tgmatl.evaluation.report import run_report
    from tgmatl.method.mi import score_folds, write_scores
    from tgmatl.method.selection import select_folds
    from tgmatl.method.splitting import leakage, make_split
    from tgmatl.survey.samples import read_samples
    from tgmatl.training import run_train_stage

    params = load_params(args.params)
    seed = read_seed(params)
    split_p = read_section(SplitParams, params, "split")
    ev = dataclasses.replace(read_section(EvalParams, params, "eval"), repeats=args.repeats)
    train = read_section(TrainParams, params, "train")
    heads = read_section(HeadsParams, params, "heads")
    sampling = read_section(SamplingParams, params, "sampling")
    geometry = read_section(GeometryParams, params, "geometry")
    mi = read_section(MIParams, params, "mi")
    setups = {"paper": [s for s in PAPER_SETUPS if s != "tg_matl"],
              "all": [s for s in SETUPS if s != "tg_matl"]}.get(args.setups)
    if setups is None:
        setups = [s.strip() for s in args.setups.split(",") if s.strip() and s != "tg_matl"]
    every = [s for s in SETUPS if s in setups or s == "tg_matl"]

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_evidence_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.source == "planted":
        samples_path, emb = planted_inputs(work / "inputs", args.dim, seed)
    else:
        samples_path = ROOT / "data/samples/samples.parquet"
        emb = {b: ROOT / f"data/embeddings/{b}.parquet" for b in ("dinov2", "mae", "clip")}
        missing = [str(p) for p in (samples_path, *emb.values()) if not p.is_file()]
        if missing:
            sys.exit(f"bench_evidence: {missing[0]} missing: run `make repro` first")
    backbones = list(emb)
    times: dict[str, float] = {}

    def timed(name, fn, *a, **k):
        t0 = time.perf_counter()
        out = fn(*a, **k)
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return out

    samples = read_samples(samples_path, ("sample_id", "scene_id", "image_path", "class_id",
                                          "class_name", "xmin", "xmax", "ymin", "ymax"))
    split = timed("split", make_split, samples, split_p, ev, seed)
    split.to_parquet(work / "split.parquet")
    table, meta = timed("score", score_folds, samples, split, geometry, mi, seed)
    write_scores(work / "scores.parquet", table, meta)
    timed("select", select_folds, table, sampling, seed).to_parquet(work / "masks.parquet")
    for b in backbones:
        for setup in every:
            tg = setup == "tg_matl"
            timed(f"train {setup}", run_train_stage, backbone=b, setups=[setup],
                  embeddings=emb[b], split=work / "split.parquet",
                  scores=work / "scores.parquet", masks=work / "masks.parquet" if tg else None,
                  samples=samples_path, out=work / "results" / b / ("tg" if tg else "train")
                  / setup, models=work / "models" / b / setup, train=train, heads=heads,
                  sampling=sampling if tg else None, seed=seed, progress=False)
    # one setup a folder above: gather them where the report looks (results/<b>/{train,tg}/)
    for b in backbones:
        for setup in every:
            sub = "tg" if setup == "tg_matl" else "train"
            src = work / "results" / b / sub / setup
            for f in src.iterdir():
                f.replace(src.parent / f.name)
            src.rmdir()
    t2 = timed("report", run_report, results_dir=work / "results", scores=work / "scores.parquet",
               mi=_mi_json(work, samples, geometry, mi, seed), metrics_out=work / "table2.json",
               plots_dir=work / "plots", report_out=work / "report.md", backbones=backbones,
               eval_params=ev, claims_out=work / "claims.json",
               comparisons_out=work / "comparisons.json", split=split,
               leakage=leakage(samples, split), setups=every)
    n_units = split[split["fold"] >= 0].groupby("repeat")["fold"].nunique().sum()
    train_total = sum(v for k, v in times.items() if k.startswith("train"))
    print(f"\nsource {args.source}: {len(backbones)} backbones x {len(every)} setups x "
          f"{n_units} units (R = {args.repeats}), heads {heads.kind}")
    print(f"{'phase':<24}{'seconds':>10}")
    for k, v in times.items():
        print(f"{k:<24}{v:>10.1f}")
    print(f"{'all training':<24}{train_total:>10.1f}")
    print(f"{'total':<24}{sum(times.values()):>10.1f}")
    print("\nTable II (mean ± std over units)")
    for b in backbones:
        for s in every:
            r = t2[b][s]
            print(f"  {b:<8}{s:<15} acc {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f}  "
                  f"R² {r['r2_mean']:+.3f} ± {r['r2_std']:.3f}  class MAP@R "
                  f"{r['class_map_at_r_mean']:.3f}  box MAP@R {r['box_map_at_r_mean']:.3f}")
    comps = json.loads((work / "comparisons.json").read_text())
    print("\nTG-MATL minus setup: diff [CI] p_holm")
    for b, rows in comps.items():
        for vs, m in rows.items():
            cells = "  ".join(f"{k}: {m[k + '_diff']:+.3f} [{m[k + '_ci_low']:+.3f}, "
                              f"{m[k + '_ci_high']:+.3f}] {m[k + '_p_holm']:.3f}"
                              for k in ("accuracy", "r2", "class_map_at_r", "box_map_at_r"))
            print(f"  {b:<8}{vs:<18}{cells}")
    claims = json.loads((work / "claims.json").read_text())
    print("\nfindings")
    for b, rows in claims.items():
        for k, c in rows.items():
            print(f"  {b:<8}{k:<30}{c['diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] "
                  f"p_holm {c['p_holm']:.3f}  {c['verdict']}")
    print(f"\nfiles: {work}")
    return 0


def _mi_json(work: Path, samples: pd.DataFrame, geometry, mi, seed) -> Path:
    from tgmatl.io import write_json
    from tgmatl.method.mi import table_one

    write_json(work / "mi.json", table_one(samples, geometry, mi, seed))
    return work / "mi.json"


if __name__ == "__main__":
    sys.exit(main())
