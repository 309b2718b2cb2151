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
  the same strength (equally strong planted signal; their training influences differ), the
  same seeds;
- ``symmetric_shared``: the same, but the second embedding's noise correlated 0.9 with the
  first's (exchangeable, equally strong): nearly the same inputs and the same seeds, so the
  two runs' seed noise is shared, as two setups' of one backbone is (the paired seed part of
  :func:`tgmatl.evaluation.stats.compare` is what handles that).

Each data set also records how far seed noise is shared (``seed_agreement/...``: the
correlation over units of two cells' twin 0 - twin 1 unit means): CLTL vs MATL on one
embedding, and the setup across the near and the independent embedding.

Training is shortened for cost (``train.epochs`` 60, ``patience`` 8, 3 L2 values for the
probes: 0.01, 1, 100; ``--full-grid``: the params' seven); every metric of the report
(accuracy, box R², class and box MAP@R) is tested.

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/bench_calibration_pipeline.py \
        --datasets 10 [--sizes demo,survey] [--configs weak --resplit false] [--start 0]
        [--raw results.jsonl] [--keep folder] [--out table.json]

``--keep``: each data set's samples, split and predictions are kept (~2 MB a demo survey);
``--recompute --keep folder --raw results.jsonl`` then tests them all again with the current
statistics, without training (``--jobs`` at a time). ``--twins 4`` trains 4 seed twins a unit
(give it its own ``--raw`` and ``--keep``); ``--recompute --first-twins 2`` on its folder tests
the same data sets as if only twins 0 and 1 had been trained: what more twins buy, paired.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("cltl", "matl")
RHO_NEAR = 0.9  # run c: its noise correlated 0.9 with run a's (nearly the same inputs)
# run -> (embedding, seed offset): a and a2 one embedding, seeds apart; b and c others
RUNS = {"a": ("a", 0), "a2": ("a", 1), "b": ("b", 0), "c": ("c", 0)}
NULLS = {"aa": "a2", "symmetric": "b", "symmetric_shared": "c"}  # null -> the run a meets
METRICS = ("accuracy", "r2", "class_map_at_r", "box_map_at_r")
# scene_signal: the herd's shared shift, relative to noise 1 per dimension; scene_size: mean
# targets a scene (the simulated calibration's sizes: herds of 2.5 / 5 on the demo, 5 / 10 on a
# survey of 2500)
CONFIGS = {"weak": dict(scene_signal=1.0, scene_size=1.0),
           "strong": dict(scene_signal=3.0, scene_size=2.0)}
SIZES = {"demo": dict(n=240, scene_size=2.5), "survey": dict(n=2500, scene_size=5.0)}
SHIFT = 0.03  # the planted effect power is reported for (a location shift of A's terms)


SMOKE = {"on": False}  # --smoke: 3 folds, 1 repeat, 5 epochs (checks the harness, not calibration)
FULL_GRID = {"on": False}  # --full-grid: the params' heads.l2_grid, not the short one
TWINS = {"n": 0}  # --twins: train.twins for every run (0: the params')


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
    if TWINS["n"]:
        train = dataclasses.replace(train, twins=TWINS["n"])
    heads = read_section(HeadsParams, raw, "heads")
    if not FULL_GRID["on"]:
        heads = dataclasses.replace(heads, l2_grid=(0.01, 1.0, 100.0))
    split = read_section(SplitParams, raw, "split")
    ev = read_section(EvalParams, raw, "eval")
    if SMOKE["on"]:
        train = dataclasses.replace(train, epochs=5, patience=2)
        split = dataclasses.replace(split, folds=3)
        ev = dataclasses.replace(ev, repeats=1)
    return (train, heads, split, ev, read_section(GeometryParams, raw, "geometry"),
            read_section(MIParams, raw, "mi"))


def one_dataset(seed: int, config: str, resplit: bool, work: Path, size: str = "demo",
                keep: Path | None = None) -> dict[str, dict]:
    """Every (setup, null, metric): diff, p and se of one planted survey, and the seed
    agreement of the setups (:func:`evaluate`). ``keep``: a folder the survey's samples, split
    and predictions are copied to (``--recompute`` tests them again without training)."""
    train_dataset(seed, config, resplit, work, size)
    if keep is not None:
        keep_dataset(work, keep)
    return evaluate(work)


def train_dataset(seed: int, config: str, resplit: bool, work: Path, size: str) -> None:
    """The planted survey, its split and scores, and every run's training, under ``work``."""
    from tgmatl.method.mi import score_folds, write_scores
    from tgmatl.method.splitting import make_split
    from tgmatl.planted import planted_survey, write_planted
    from tgmatl.training import run_train_stage

    train, heads, split_p, ev, geometry, mi = _params()
    ev = dataclasses.replace(ev, resplit=resplit)
    n = SIZES[size]["n"]
    scenes = round(n / (SIZES[size]["scene_size"] * CONFIGS[config]["scene_size"]))
    kw = dict(class_signal=0.6, geometry_signal=0.8, seed=seed, n_scenes=scenes,
              scene_signal=CONFIGS[config]["scene_signal"])
    survey = planted_survey(n, **kw)
    clean = planted_survey(n, noise=0.0, **kw).embeddings  # the same samples and signal
    noise = survey.embeddings - clean
    rng = np.random.default_rng([seed, 17])
    fresh = rng.standard_normal(clean.shape)
    near = RHO_NEAR * noise + np.sqrt(1.0 - RHO_NEAR**2) * rng.standard_normal(clean.shape)
    work.mkdir(parents=True, exist_ok=True)
    write_planted(survey, work / "samples.parquet", work / "a.parquet")
    for name, x in (("b", clean + fresh), ("c", clean + near)):
        write_planted(dataclasses.replace(survey, embeddings=x.astype(np.float32)),
                      work / "samples.parquet", work / f"{name}.parquet")
    split = make_split(survey.samples, split_p, ev, seed)
    split.to_parquet(work / "split.parquet")
    table, meta = score_folds(survey.samples, split, geometry, mi, seed)
    write_scores(work / "scores.parquet", table, meta)
    for name, (emb, s) in RUNS.items():
        run_train_stage(backbone=name, setups=list(SETUPS), embeddings=work / f"{emb}.parquet",
                        split=work / "split.parquet", scores=work / "scores.parquet",
                        out=work / "results" / name / "train", models=work / "models" / name,
                        train=train, heads=heads, sampling=None, seed=seed + s,
                        samples=work / "samples.parquet", progress=False,
                        retrieval_queries=ev.retrieval_queries)


def keep_dataset(work: Path, keep: Path) -> None:
    """Copy what :func:`evaluate` reads (samples, split, predictions: ~2 MB a demo survey)."""
    keep.mkdir(parents=True, exist_ok=True)
    for f in ("samples.parquet", "split.parquet"):
        shutil.copyfile(work / f, keep / f)
    for name in RUNS:
        out = keep / "results" / name / "train"
        out.mkdir(parents=True, exist_ok=True)
        for setup in SETUPS:
            f = f"{setup}.predictions.parquet"
            shutil.copyfile(work / "results" / name / "train" / f, out / f)


def evaluate(work: Path, first_twins: int = 0) -> dict[str, dict]:
    """The report's comparisons of one trained data set: per (setup, null, metric) the diff, p,
    se and training share; under ``seed_agreement/...`` the correlation over units of two cells'
    twin 0 - twin 1 unit means (how far their seed noise is shared). ``first_twins``: test as
    if only twins ``0 .. first_twins - 1`` had been trained (0: all)."""
    import pandas as pd

    from tgmatl.evaluation.comparisons import (
        arm_terms,
        compare,
        read_predictions,
        unit_memberships,
    )
    from tgmatl.evaluation.evidence import train_share

    geometry = _params()[4]
    samples = pd.read_parquet(work / "samples.parquet")
    split = pd.read_parquet(work / "split.parquet")
    preds = read_predictions(work / "results", [(n, s) for n in RUNS for s in SETUPS])
    if first_twins:
        preds = {k: v[v["twin"] < first_twins].reset_index(drop=True) for k, v in preds.items()}
    features = list(geometry.features)
    train_ids = unit_memberships(split)
    scenes = dict(zip(samples["sample_id"], samples["scene_id"], strict=True))
    out: dict[str, dict] = {}
    for setup in SETUPS:
        for null, run in NULLS.items():
            for m in METRICS:
                c = compare(preds, ("a", setup), (run, setup), m, features, train_ids, scenes,
                            alpha=0.05)
                out[f"{setup}/{null}/{m}"] = {"diff": c.result.diff, "p": c.result.p_value,
                                              "se": c.result.se, "df": c.result.df,
                                              "train_share": train_share(c.result)}

    def twin_delta(cell: tuple[str, str], m: str) -> np.ndarray:
        df = preds[cell]
        v = df[["repeat", "fold", "twin"]].assign(v=arm_terms(df, m, features))
        means = v.groupby(["repeat", "fold", "twin"])["v"].mean().unstack("twin")
        return (means[0] - means[1]).to_numpy()

    for m in METRICS:
        for name, (x, y) in {"cltl_matl": (("a", "cltl"), ("a", "matl")),
                             "near": (("a", "cltl"), ("c", "cltl")),
                             "apart": (("a", "cltl"), ("b", "cltl"))}.items():
            out[f"seed_agreement/{name}/{m}"] = {
                "rho": float(np.corrcoef(twin_delta(x, m), twin_delta(y, m))[0, 1])}
    return out


def run_pipeline(n_datasets: int, configs: tuple[str, ...] = ("weak", "strong"),
                 resplits: tuple[bool, ...] = (False, True), start: int = 0,
                 raw: Path | None = None, sizes: tuple[str, ...] = ("demo",),
                 keep: Path | None = None) -> list[dict]:
    """Data sets ``start .. start + n_datasets - 1`` of each configuration, seed by seed
    (every configuration gets seed s before any gets s + 1, so a run stopped early is
    balanced). ``raw``: a JSON Lines file each data set's results are appended to as soon as
    it is done (a long run can stop and go on with ``start``); the table then counts every
    data set of the file (the latest line of a seed)."""
    from tgmatl.tfsetup import start_tensorflow

    start_tensorflow()
    cells = list(itertools.product(sizes, configs, resplits))
    found: dict[tuple, dict[int, dict]] = {c: dict(_raw_lines(raw, *c)) for c in cells}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(start, start + n_datasets):
            for size, config, resplit in cells:
                kept = None if keep is None else keep / _name(size, config, resplit, s)
                found[size, config, resplit][s] = res = one_dataset(
                    s, config, resplit, Path(tmp) / _name(size, config, resplit, s), size, kept)
                _append(raw, size, config, resplit, s, res)
                shutil.rmtree(Path(tmp) / _name(size, config, resplit, s))
                print(f"  {size} {config} resplit={resplit}: data set {s + 1 - start}/"
                      f"{n_datasets} ({time.perf_counter() - t0:.0f} s)", flush=True)
    seconds = round(time.perf_counter() - t0, 1)
    return [row for c in cells for row in _rows(found[c], *c, seconds)]


def _name(size: str, config: str, resplit: bool, seed: int) -> str:
    return f"{size}-{config}-{'resplit' if resplit else 'fixed'}-{seed}"


def _append(raw: Path | None, size: str, config: str, resplit: bool, seed: int,
            results: dict) -> None:
    """One line a data set, in one write (parallel runs may append to one file)."""
    if raw is None:
        return
    line = json.dumps({"size": size, "config": config, "resplit": resplit, "seed": seed,
                       "results": results}) + "\n"
    with raw.open("a") as f:
        f.write(line)


def recompute(keep: Path, raw: Path, jobs: int = 1, first_twins: int = 0) -> None:
    """Test every kept data set again with the current code (no training), ``jobs`` at a
    time: for a change of the statistics, or with fewer twins (``first_twins``). Writes
    ``raw`` anew."""
    from joblib import Parallel, delayed

    from tgmatl.tfsetup import start_tensorflow

    start_tensorflow()
    folders = sorted(p for p in keep.iterdir() if p.is_dir())
    results = Parallel(n_jobs=jobs, verbose=5)(delayed(evaluate)(f, first_twins) for f in folders)
    tmp = raw.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    for folder, res in zip(folders, results, strict=True):
        size, config, split, seed = folder.name.split("-")
        _append(tmp, size, config, split == "resplit", int(seed), res)
    tmp.replace(raw)


def _raw_lines(raw: Path | None, size: str, config: str, resplit: bool):
    if raw is None or not raw.exists():
        return
    for line in raw.read_text().splitlines():
        rec = json.loads(line)
        if (rec.get("size", "demo") == size and rec["config"] == config
                and rec["resplit"] == resplit):
            yield int(rec["seed"]), rec["results"]


def _rows(found: dict[int, dict], size: str, config: str, resplit: bool,
          seconds: float) -> list[dict]:
    """Per (setup, null, metric): the false-positive rate at 0.05 with its Wilson interval and
    the ratio of the reported se to the spread of the differences; per (pair, metric) the mean
    seed agreement (``null`` ``seed_agreement``, ``setup`` the pair, ``rho``)."""
    from bench_calibration import _rate

    keys = sorted({k for res in found.values() for k in res})
    rows = []
    for key in keys:
        if key.startswith("seed_agreement/"):
            _, pair, metric = key.split("/")
            rho = [res[key]["rho"] for res in found.values() if key in res]
            rows.append({"size": size, "n": SIZES[size]["n"], "clustering": config,
                         "resplit": resplit, "setup": pair, "null": "seed_agreement",
                         "metric": metric, "n_datasets": len(rho),
                         "rho": float(np.nanmean(rho))})
            continue
        v = np.array([(res[key]["diff"], res[key]["p"], res[key]["se"],
                       res[key].get("df", np.nan)) for res in found.values() if key in res])
        # rejections with the training part at its floor of 0 / above it (where recorded)
        share = np.array([np.nan if res[key].get("train_share") is None
                          else res[key]["train_share"] for res in found.values() if key in res])
        at_floor, known = share == 0.0, ~np.isnan(share)
        setup, null, metric = key.split("/")
        rate = _rate(v[:, 1] < 0.05)
        rows.append({"size": size, "n": SIZES[size]["n"], "clustering": config,
                     "resplit": resplit, "setup": setup, "null": null,
                     "metric": metric, "n_datasets": len(v), "fpr": rate["rate"],
                     "floored": [int(np.sum((v[:, 1] < 0.05) & at_floor)), int(at_floor.sum())],
                     "unfloored": [int(np.sum((v[:, 1] < 0.05) & known & ~at_floor)),
                                   int(np.sum(known & ~at_floor))],
                     "fpr_low": rate["low"], "fpr_high": rate["high"],
                     "se_ratio": float(np.sqrt(np.mean(v[:, 2] ** 2))
                                       / max(v[:, 0].std(), 1e-12)),
                     "seconds": seconds})
        if len(v) > 2 and not np.any(np.isnan(v[:, 3])):
            power, oracle = shifted_power(v[:, 0], v[:, 2], v[:, 3])
            rows[-1].update({"shift": SHIFT, "power": power["rate"],
                             "power_low": power["low"], "power_high": power["high"],
                             "oracle_power": oracle["rate"], "oracle_low": oracle["low"],
                             "oracle_high": oracle["high"]})
        print(f"{size:6s} {config:6s} resplit={resplit!s:5s} {setup:5s} {null:16s} {metric:15s} "
              f"fpr {rate['rate']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}] "
              f"se/sd {rows[-1]['se_ratio']:.2f} (n {len(v)})", flush=True)
    return rows


def shifted_power(diff: np.ndarray, se: np.ndarray, df: np.ndarray, shift: float = SHIFT,
                  alpha: float = 0.05) -> tuple[dict, dict]:
    """Power of the test and of the oracle for a planted effect ``shift`` on a null's data sets.

    The planted effect is a location shift: every per-sample term of side A raised by
    ``shift``. ``diff`` moves by ``shift`` and nothing else does: the test, training and seed
    parts are built from deviations (of samples from the mean, of folds from each other, of
    twin from twin), so each data set's se and df stay what the null's were and its p is
    ``2 t_df.sf(|diff + shift| / se)``. The oracle knows the true standard deviation of
    ``diff`` (its spread over the data sets) and rejects where ``|diff + shift| > z_(1 -
    alpha/2) sd`` (as ``bench_calibration.py``'s). An effect that varies from sample to sample
    would add test-sample variance, which the test estimates and the oracle would know too."""
    from bench_calibration import _rate
    from scipy import stats as sps

    moved = np.asarray(diff, np.float64) + shift
    se = np.asarray(se, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, 2.0 * sps.t.sf(np.abs(moved) / se, df),
                     np.where(moved != 0.0, 0.0, 1.0))
    sd = float(np.std(diff, ddof=1))
    return _rate(p < alpha), _rate(np.abs(moved) > sps.norm.isf(alpha / 2.0) * sd)


def table(rows: list[dict]) -> str:
    """The README's markdown tables of a ``--out`` JSON: false-positive rates (CLTL / MATL)
    per configuration and null, and the seed agreements."""
    cells: dict[tuple, dict] = {}
    agree: dict[tuple, dict] = {}
    for r in rows:
        key = (r.get("size", "demo"), r["clustering"], r["resplit"])
        if r["null"] == "seed_agreement":
            agree.setdefault(key, {})[r["setup"], r["metric"]] = r["rho"]
            continue
        cells.setdefault((*key, r["null"]), {})[r["setup"], r["metric"]] = r
    lines = ["| size | herds | resplit | null | data sets | accuracy | box R² | class MAP@R | "
             "box MAP@R |", "|---" * 9 + "|"]
    for (size, herds, resplit, null), c in cells.items():
        n = min(v["n_datasets"] for v in c.values())
        rates = [" / ".join(f"{c[s, m]['fpr']:.3f}" for s in SETUPS) for m in METRICS]
        lines.append(f"| {size} | {herds} | {str(resplit).lower()} | {null} | {n} | "
                     + " | ".join(rates) + " |")
    lines += ["", *pooled(rows), "", *power_table(rows)]
    lines += ["", "| size | herds | resplit | pair | accuracy | box R² | class MAP@R | box MAP@R |",
              "|---" * 8 + "|"]
    for (size, herds, resplit), a in agree.items():
        for pair in ("cltl_matl", "near", "apart"):
            lines.append(f"| {size} | {herds} | {str(resplit).lower()} | {pair} | "
                         + " | ".join(f"{a[pair, m]:.2f}" for m in METRICS) + " |")
    return "\n".join(lines)


def _add(counts: dict[tuple, list], key: tuple, k: float, n: float) -> None:
    """Add ``(k, n)`` to ``counts[key]``'s running pair (counts pooled over cells)."""
    c = counts.setdefault(key, [0, 0])
    c[0] += k
    c[1] += n


def power_table(rows: list[dict]) -> list[str]:
    """Power / oracle power per configuration, null and setup for the planted shift
    (:func:`shifted_power`), and the ratio of their sums per (size, resplit, null)."""
    cells: dict[tuple, dict] = {}
    for r in rows:
        if "power" in r:
            cells.setdefault((r.get("size", "demo"), r["clustering"], r["resplit"], r["null"],
                              r["setup"]), {})[r["metric"]] = r
    if not cells:
        return []
    shift = next(r["shift"] for r in rows if "power" in r)
    lines = [f"| size | herds | resplit | null | setup | data sets | power / oracle at +{shift}: "
             "accuracy | box R² | class MAP@R | box MAP@R |", "|---" * 10 + "|"]
    ratio: dict[tuple, list[float]] = {}
    for (size, herds, resplit, null, setup), c in cells.items():
        n = min(v["n_datasets"] for v in c.values())
        lines.append(f"| {size} | {herds} | {str(resplit).lower()} | {null} | {setup} | {n} | "
                     + " | ".join(f"{c[m]['power']:.2f} / {c[m]['oracle_power']:.2f}"
                                  for m in METRICS) + " |")
        for m in METRICS:  # rejections of the test and of the oracle, summed over the cells
            _add(ratio, (size, resplit, null, m), c[m]["power"] * c[m]["n_datasets"],
                 c[m]["oracle_power"] * c[m]["n_datasets"])
    lines += ["", "| size | resplit | null | power / oracle power (pooled): accuracy | box R² | "
              "class MAP@R | box MAP@R |", "|---" * 7 + "|"]

    def share(test: float, oracle: float) -> str:
        return f"{test / oracle:.2f}" if oracle > 0 else "–"

    for size, resplit, null in dict.fromkeys(k[:3] for k in ratio):
        lines.append(f"| {size} | {str(resplit).lower()} | {null} | " + " | ".join(
            share(*ratio[size, resplit, null, m]) for m in METRICS) + " |")
    return lines


def pooled(rows: list[dict]) -> list[str]:
    """Rejections / tests pooled over herds and setups, per (size, resplit) and null and per
    metric: single cells of a few dozen data sets cannot be told from 0.05 one by one."""
    count: dict[tuple, list[int]] = {}
    floors: dict[tuple, list[int]] = {}
    for r in rows:
        if r["null"] == "seed_agreement":
            continue
        cell = (r.get("size", "demo"), r["resplit"])
        k, n = round(r["fpr"] * r["n_datasets"]), r["n_datasets"]
        for kind, name in (("null", r["null"]), ("metric", r["metric"]), ("all", "")):
            _add(count, (*cell, kind, name), k, n)
        if "floored" in r:
            _add(floors, (*cell, "at the floor"), *r["floored"])
            _add(floors, (*cell, "above it"), *r["unfloored"])
    lines = ["| size | resplit | pooled over | rejections / tests | rate |", "|---" * 5 + "|"]
    order = {"null": 0, "metric": 1, "all": 2}
    for (size, resplit, kind, name), (k, n) in sorted(
            count.items(), key=lambda kv: (kv[0][0], kv[0][1], order[kv[0][2]], kv[0][3])):
        label = "everything" if kind == "all" else f"{kind} {name}"
        lines.append(f"| {size} | {str(resplit).lower()} | {label} | {k} / {n} | {k / n:.3f} |")
    for (size, resplit, key), (k, n) in sorted(floors.items()):
        lines.append(f"| {size} | {str(resplit).lower()} | training part {key} | {k} / {n} | "
                     f"{k / max(n, 1):.3f} |")
    return lines


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", default="", help="print the tables of this --out JSON and stop")
    ap.add_argument("--datasets", type=int, default=10)
    ap.add_argument("--start", type=int, default=0, help="first data set (seed)")
    ap.add_argument("--raw", default="", help="JSON Lines of every data set's results "
                                             "(appended; counted in the table)")
    ap.add_argument("--out", default="")
    ap.add_argument("--smoke", action="store_true", help="tiny protocol: checks the harness")
    ap.add_argument("--full-grid", action="store_true",
                    help="the probes' whole heads.l2_grid of params.yaml (default: 3 values)")
    ap.add_argument("--configs", default="weak,strong", help="herd strengths: weak,strong")
    ap.add_argument("--resplit", default="false,true", help="eval.resplit values: false,true")
    ap.add_argument("--sizes", default="demo", help="survey sizes: demo (240), survey (2500)")
    ap.add_argument("--keep", default="", help="folder to keep each data set's predictions in")
    ap.add_argument("--twins", type=int, default=0,
                    help="seed twins per unit (default: params.yaml train.twins); give such "
                         "runs their own --raw and --keep")
    ap.add_argument("--recompute", action="store_true",
                    help="test the data sets kept in --keep again (no training), into --raw")
    ap.add_argument("--jobs", type=int, default=1, help="--recompute: data sets at a time")
    ap.add_argument("--first-twins", type=int, default=0,
                    help="--recompute: test only the first N twins of each unit (0: all)")
    args = ap.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        sys.exit(0)
    SMOKE["on"] = args.smoke
    FULL_GRID["on"] = args.full_grid
    TWINS["n"] = args.twins
    if args.recompute:
        if not (args.keep and args.raw):
            ap.error("--recompute needs --keep and --raw")
        recompute(Path(args.keep), Path(args.raw), args.jobs, args.first_twins)
        args.datasets = 0
    rows = run_pipeline(args.datasets, tuple(args.configs.split(",")),
                        tuple(v == "true" for v in args.resplit.split(",")), args.start,
                        Path(args.raw) if args.raw else None, tuple(args.sizes.split(",")),
                        Path(args.keep) if args.keep else None)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    sys.exit(0)
