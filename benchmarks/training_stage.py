"""The whole train stage, old code vs this checkout, on one survey-size planted input
(``bench_training.py --stage``).

The input is built once with this checkout (a planted survey, its split, scores and masks: the
stages before ``train``, unchanged by the training code). Then both codes run the two DVC train
processes of one backbone as DVC would (``train``: every setup of ``train.setups``;
``train_tg``: TG-MATL), each a child process timed from start to exit, its peak RSS from
``wait4``. The old code runs from another checkout's ``src`` (``--base``, e.g. a ``git worktree``
of the commit before) with that checkout's ``params.yaml``; this checkout's runs with its own
(seed twins in). Old and new run at the same time, one thread each, so that the other users of
the machine slow both alike; the one that finishes last has the CPU to itself at the end, which
favours it (the table's ratio leans toward the slower code).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, yaml
from tgmatl.tfsetup import start_tensorflow
start_tensorflow()
from tgmatl.config import EvalParams, HeadsParams, SamplingParams, TrainParams
from tgmatl.params import read_section, read_seed
from tgmatl.training import run_train_stage
cfg = json.loads(sys.argv[1])
params = yaml.safe_load(open(cfg["params"]))
params["train"]["setups"] = cfg["setups"]
for key, value in cfg["override"].items():
    params["train"][key] = value
train = read_section(TrainParams, params, "train")
sampling = read_section(SamplingParams, params, "sampling") if cfg["tg"] else None
run_train_stage(backbone="planted", setups=cfg["run"], embeddings=cfg["inputs"] + "/emb.parquet",
                split=cfg["inputs"] + "/split.parquet", scores=cfg["inputs"] + "/scores.parquet",
                masks=cfg["inputs"] + "/masks.parquet" if cfg["tg"] else None,
                samples=cfg["inputs"] + "/samples.parquet", out=cfg["out"] + "/results",
                models=cfg["out"] + "/models", train=train,
                heads=read_section(HeadsParams, params, "heads"), sampling=sampling,
                seed=read_seed(params), progress=False,
                retrieval_queries=read_section(EvalParams, params, "eval").retrieval_queries)
"""


def build_inputs(root: Path, n: int, dim: int, repeats: int) -> None:
    """Planted survey (``n`` targets, ``dim``-d), split with ``repeats`` repeats, scores, masks."""
    import dataclasses

    sys.path.insert(0, str(ROOT / "src"))
    from tgmatl.config import EvalParams, GeometryParams, MIParams, SamplingParams, SplitParams
    from tgmatl.io import write_parquet
    from tgmatl.method.mi import score_folds, write_scores
    from tgmatl.method.selection import select_folds
    from tgmatl.method.splitting import make_split
    from tgmatl.params import load_params, read_section, read_seed
    from tgmatl.planted import embeddings_table, planted_survey

    params = load_params(ROOT / "params.yaml")
    seed = read_seed(params)
    sv = planted_survey(n, class_names=("cow", "deer", "horse"), dim=dim,
                        n_scenes=max(1, round(n / 2.5)), seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    write_parquet(root / "samples.parquet", sv.samples)
    write_parquet(root / "emb.parquet", embeddings_table(sv.samples["sample_id"], sv.embeddings))
    ev = dataclasses.replace(read_section(EvalParams, params, "eval"), repeats=repeats)
    split = make_split(sv.samples, read_section(SplitParams, params, "split"), ev, seed)
    split.to_parquet(root / "split.parquet")
    table, meta = score_folds(sv.samples, split, read_section(GeometryParams, params, "geometry"),
                              read_section(MIParams, params, "mi"), seed)
    write_scores(root / "scores.parquet", table, meta)
    select_folds(table, read_section(SamplingParams, params, "sampling"), seed).to_parquet(
        root / "masks.parquet")


def run_child(src: Path, cfg: dict) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one train process."""
    env = {**os.environ, "PYTHONPATH": str(src), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{src}: train process failed:\n{err[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def stage(base: Path, n: int, dim: int, repeats: int, setups: list[str],
          override: dict | None = None) -> str:
    """Markdown table: old vs new train processes of one backbone."""
    work = Path(tempfile.mkdtemp(prefix="bench_train_stage_"))
    t0 = time.perf_counter()
    build_inputs(work / "inputs", n, dim, repeats)
    print(f"inputs: {n} planted targets, {dim}-d, R = {repeats} ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    rest = [s for s in setups if s != "tg_matl"]
    procs = [("train", rest, False), ("train_tg", ["tg_matl"], True)]
    codes = {"old": (base / "src", base / "params.yaml"),
             "new": (ROOT / "src", ROOT / "params.yaml")}
    times: dict[tuple[str, str], tuple[float, float]] = {}

    def run(code: str) -> None:
        src, params = codes[code]
        for name, run_setups, tg in procs:
            if not run_setups:
                continue
            cfg = {"params": str(params), "setups": rest or ["wtl"], "run": run_setups, "tg": tg,
                   "inputs": str(work / "inputs"), "out": str(work / code / name),
                   "override": (override or {}) if code == "new" else {}}
            times[code, name] = run_child(src, cfg)
            print(f"{code} {name}: {times[code, name][0]:.0f} s, "
                  f"{times[code, name][1]:.0f} MB", flush=True)

    threads = [threading.Thread(target=run, args=(c,)) for c in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    twins = json.loads(next((work / "new" / "train_tg" / "results").glob("*.json"))
                       .read_text()).get("twins")
    lines = [f"whole train stage: {n} planted targets, {dim}-d, R = {repeats}, setups "
             f"{', '.join(setups)}; old code without twins, new with twins = {twins}",
             "", "| process | old s | new s | speed-up | old peak MB | new peak MB | memory |",
             "|---|---|---|---|---|---|---|"]
    total = {"old": 0.0, "new": 0.0}
    for name, _, _ in procs:
        if ("old", name) not in times:
            continue
        (os_, om), (ns, nm) = times["old", name], times["new", name]
        total["old"] += os_
        total["new"] += ns
        lines.append(f"| {name} | {os_:.0f} | {ns:.0f} | {os_ / ns:.2f}x | {om:.0f} | {nm:.0f} "
                     f"| {nm / om:.2f}x |")
    lines.append(f"| both | {total['old']:.0f} | {total['new']:.0f} | "
                 f"{total['old'] / total['new']:.2f}x | | | |")
    return "\n".join(lines)
