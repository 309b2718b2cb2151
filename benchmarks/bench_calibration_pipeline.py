"""Calibration through the pipeline's own code: planted surveys, the real split, score and train
stages' functions, the report's comparisons (imported by ``bench_calibration.py``; also a
script).

A data set: a planted survey (``tgmatl.planted``) with scenes whose embeddings share a
scene-level shift (herds: ``scene_signal``), split by the real ``make_split`` (scene-grouped,
the default params otherwise), scored by ``score_folds`` and trained by ``run_train_stage``
(Adam projections with early stopping, probe heads, retrieval with the query cap, seed twins
when ``train.twins`` exists) for CLTL and MATL. Nulls:

- ``aa``: the setup trained twice on the same embeddings with seeds 1 apart;
- ``symmetric``: the setup on two embeddings of the same samples with independent noise of
  the same strength (equally strong planted signal; their training influences differ).

Training is shortened for cost (``train.epochs`` 60, ``patience`` 8, 3 L2 values for the
probes); every metric of the report (accuracy, box R², class and box MAP@R) is tested.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/bench_calibration_pipeline.py \
        --datasets 10 [--configs weak --resplit false] [--start 0] [--raw results.jsonl]
        [--out table.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("cltl", "matl")
METRICS = ("accuracy", "r2", "class_map_at_r", "box_map_at_r")
CONFIGS = {  # scene_signal: the herd's shared shift, relative to noise 1 per dimension
    "weak": dict(scene_signal=1.0, n_scenes=96),
    "strong": dict(scene_signal=3.0, n_scenes=48),
}


SMOKE = {"on": False}  # --smoke: 3 folds, 1 repeat, 5 epochs (checks the harness, not calibration)


def _params():
    from tgmatl.config import (
        EvalParams,
        GeometryParams,
        HeadsParams,
        MIParams,
        SplitParams,
        TrainParams,
    )
    from tgmatl.params import load_params, read_section

    raw = load_params(ROOT / "params.yaml")
    train = read_section(TrainParams, raw, "train")
    train = dataclasses.replace(train, epochs=60, patience=8)
    heads = read_section(HeadsParams, raw, "heads")
    heads = dataclasses.replace(heads, l2_grid=(0.01, 1.0, 100.0))
    split = read_section(SplitParams, raw, "split")
    ev = read_section(EvalParams, raw, "eval")
    if SMOKE["on"]:
        train = dataclasses.replace(train, epochs=5, patience=2)
        split = dataclasses.replace(split, folds=3)
        ev = dataclasses.replace(ev, repeats=1)
    return (train, heads, split, ev, read_section(GeometryParams, raw, "geometry"),
            read_section(MIParams, raw, "mi"))


def one_dataset(seed: int, config: str, resplit: bool, work: Path) -> dict[str, dict]:
    """Every (setup, null, metric): diff and p of one planted survey."""
    from tgmatl.evaluation.comparisons import compare, read_predictions, unit_memberships
    from tgmatl.method.mi import score_folds, write_scores
    from tgmatl.method.splitting import make_split
    from tgmatl.planted import planted_survey, write_planted
    from tgmatl.training import run_train_stage

    train, heads, split_p, ev, geometry, mi = _params()
    ev = dataclasses.replace(ev, resplit=resplit)
    kw = dict(class_signal=0.6, geometry_signal=0.8, seed=seed, **CONFIGS[config])
    survey = planted_survey(240, **kw)
    clean = planted_survey(240, noise=0.0, **kw)  # the same samples and signal, no noise
    rng = np.random.default_rng([seed, 17])
    other = dataclasses.replace(survey, embeddings=(
        clean.embeddings + rng.standard_normal(clean.embeddings.shape)).astype(np.float32))
    work.mkdir(parents=True, exist_ok=True)
    write_planted(survey, work / "samples.parquet", work / "a.parquet")
    write_planted(other, work / "samples.parquet", work / "b.parquet")
    split = make_split(survey.samples, split_p, ev, seed)
    split.to_parquet(work / "split.parquet")
    table, meta = score_folds(survey.samples, split, geometry, mi, seed)
    write_scores(work / "scores.parquet", table, meta)
    runs = {"a": ("a.parquet", seed), "a2": ("a.parquet", seed + 1), "b": ("b.parquet", seed)}
    for name, (emb, s) in runs.items():
        run_train_stage(backbone=name, setups=list(SETUPS), embeddings=work / emb,
                        split=work / "split.parquet", scores=work / "scores.parquet",
                        out=work / "results" / name / "train", models=work / "models" / name,
                        train=train, heads=heads, sampling=None, seed=s,
                        samples=work / "samples.parquet", progress=False,
                        retrieval_queries=ev.retrieval_queries)
    preds = read_predictions(work / "results", [(n, s) for n in runs for s in SETUPS])
    features = list(geometry.features)
    train_ids = unit_memberships(split)
    scenes = dict(zip(survey.samples["sample_id"], survey.samples["scene_id"], strict=True))
    out: dict[str, dict] = {}
    for setup in SETUPS:
        for null, other_cell in (("aa", ("a2", setup)), ("symmetric", ("b", setup))):
            for m in METRICS:
                c = compare(preds, ("a", setup), other_cell, m, features, train_ids, scenes,
                            alpha=0.05)
                out[f"{setup}/{null}/{m}"] = {"diff": c.result.diff, "p": c.result.p_value,
                                              "se": c.result.se}
    return out


def run_pipeline(n_datasets: int, configs: tuple[str, ...] = ("weak", "strong"),
                 resplits: tuple[bool, ...] = (False, True), start: int = 0,
                 raw: Path | None = None) -> list[dict]:
    """Data sets ``start .. start + n_datasets - 1`` of each configuration. ``raw``: a JSON
    Lines file each data set's results are appended to as soon as it is done (a long run can
    stop and go on with ``start``); the table then counts every data set of the file (the
    latest line of a seed)."""
    from tgmatl.tfsetup import start_tensorflow

    start_tensorflow()
    rows = []
    for config in configs:
        for resplit in resplits:
            t0 = time.perf_counter()
            found: dict[int, dict] = dict(_raw_lines(raw, config, resplit))
            with tempfile.TemporaryDirectory() as tmp:
                for s in range(start, start + n_datasets):
                    found[s] = one_dataset(s, config, resplit, Path(tmp) / f"d{s}")
                    if raw is not None:
                        with raw.open("a") as f:
                            f.write(json.dumps({"config": config, "resplit": resplit, "seed": s,
                                                "results": found[s]}) + "\n")
                    print(f"  {config} resplit={resplit}: data set {s + 1 - start}/{n_datasets} "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
            rows.extend(_rows(found, config, resplit, round(time.perf_counter() - t0, 1)))
    return rows


def _raw_lines(raw: Path | None, config: str, resplit: bool):
    if raw is None or not raw.exists():
        return
    for line in raw.read_text().splitlines():
        rec = json.loads(line)
        if rec["config"] == config and rec["resplit"] == resplit:
            yield int(rec["seed"]), rec["results"]


def _rows(found: dict[int, dict], config: str, resplit: bool, seconds: float) -> list[dict]:
    """Per (setup, null, metric): the false-positive rate at 0.05 with its Wilson interval and
    the ratio of the reported se to the spread of the differences."""
    from bench_calibration import _rate

    keys = sorted({k for res in found.values() for k in res})
    rows = []
    for key in keys:
        v = np.array([(res[key]["diff"], res[key]["p"], res[key]["se"])
                      for res in found.values() if key in res])
        setup, null, metric = key.split("/")
        rate = _rate(v[:, 1] < 0.05)
        rows.append({"clustering": config, "resplit": resplit, "setup": setup, "null": null,
                     "metric": metric, "n_datasets": len(v), "fpr": rate["rate"],
                     "fpr_low": rate["low"], "fpr_high": rate["high"],
                     "se_ratio": float(np.sqrt(np.mean(v[:, 2] ** 2))
                                       / max(v[:, 0].std(), 1e-12)),
                     "seconds": seconds})
        print(f"{config:6s} resplit={resplit!s:5s} {setup:5s} {null:9s} {metric:15s} "
              f"fpr {rate['rate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] "
              f"se/sd {rows[-1]['se_ratio']:.2f} (n {len(v)})", flush=True)
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--start", type=int, default=0, help="first data set (seed)")
    ap.add_argument("--raw", default="", help="JSON Lines of every data set's results "
                                             "(appended; counted in the table)")
    ap.add_argument("--out", default="")
    ap.add_argument("--smoke", action="store_true", help="tiny protocol: checks the harness")
    ap.add_argument("--configs", default="weak,strong", help="herd strengths: weak,strong")
    ap.add_argument("--resplit", default="false,true", help="eval.resplit values: false,true")
    args = ap.parse_args()
    SMOKE["on"] = args.smoke
    rows = run_pipeline(args.datasets, tuple(args.configs.split(",")),
                        tuple(v == "true" for v in args.resplit.split(",")), args.start,
                        Path(args.raw) if args.raw else None)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    sys.exit(0)
