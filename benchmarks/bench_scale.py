"""How each pipeline stage's time and memory grow with the survey size.

    .venv/bin/python benchmarks/bench_scale.py                      # N = 2500 5000 10000 20000
    .venv/bin/python benchmarks/bench_scale.py --sizes 1000 2000 --out scale.md

For each N, a copy of the repository gets a demo survey of N targets (``demo.n_targets`` = N,
``demo.targets_per_scene`` the default 2.5 targets a scene) and every stage of
``dvc.yaml`` runs in order, its command taken from ``dvc.yaml`` as DVC would run it (one
backbone, the tiny random encoder). Each stage is a child process: its wall time and peak RSS
(``wait4``'s ``ru_maxrss``) are recorded. The embed stage's encoder cost is measured apart (the
same encoder on in-memory tensors of the same count), so what the stage spends around it
(decode, resize, Parquet) shows as ``embed (rest)``.

Training is run for a fixed number of epochs (``train.patience`` > ``train.epochs``, so no early
stop): when to stop depends on the data, so a converged run's time is epochs × this per-epoch
cost. The exponent of each stage is the least-squares slope of log(time) on log(N).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from repo_copy import copy_repo  # noqa: E402

TARGETS_PER_SCENE = 2.5  # the default demo's demo.targets_per_scene


def bench_params(base: dict, n: int, backbone: str, setups: list[str], epochs: int,
                 repeats: int, per_scene: float) -> dict:
    """``params.yaml`` for a survey of ``n`` targets: one backbone, fixed epochs."""
    p = yaml.safe_load(yaml.safe_dump(base))
    p["demo"]["n_targets"] = n
    p["demo"]["targets_per_scene"] = per_scene
    p["embed"]["backbones"] = [backbone]
    p["eval"]["repeats"] = repeats
    p["train"]["setups"] = setups
    p["train"]["epochs"] = epochs
    p["train"]["patience"] = epochs + 1
    return p


def _lookup(params: dict, dotted: str):
    value = params
    for part in dotted.split("."):
        value = value[part]
    return value


def stage_commands(dvc_yaml: dict, params: dict) -> list[tuple[str, str]]:
    """``(name, command)`` of each stage in ``dvc.yaml`` order, foreach expanded, ``${}`` filled."""
    out = []
    for name, stage in dvc_yaml["stages"].items():
        if "foreach" in stage:
            items = _lookup(params, stage["foreach"].strip("${}"))
            entries = [(f"{name}@{item}", stage["do"]["cmd"], item) for item in items]
        else:
            entries = [(name, stage["cmd"], None)]
        for label, cmd, item in entries:
            cmd = cmd.replace("${item}", str(item)) if item is not None else cmd
            cmd = re.sub(r"\$\{([\w.]+)\}", lambda m: str(_lookup(params, m.group(1))), cmd)
            out.append((label, " ".join(cmd.split())))
    return out


def run_stage(cmd: str, cwd: Path, env: dict, log: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one stage command."""
    with log.open("ab") as fh:
        fh.write(f"$ {cmd}\n".encode())
        fh.flush()
        start = time.perf_counter()
        # exec'd directly (no shell): ru_maxrss is then the stage's own process
        proc = subprocess.Popen(shlex.split(cmd), cwd=cwd, env=env, stdout=fh, stderr=fh)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"bench_scale: `{cmd}` failed ({proc.returncode}); see {log}")
    return seconds, usage.ru_maxrss / 1024.0  # Linux: KiB


def encoder_seconds(params: dict, backbone: str, n: int) -> float:
    """Seconds the stage's encoder takes for ``n`` images already in memory (batched as embed)."""
    import tensorflow as tf

    from tgmatl.config import EmbedParams, backbone_section
    from tgmatl.embedding.backbones import load_embedder
    from tgmatl.embedding.extraction import configure_threads, make_infer
    from tgmatl.params import read_section

    configure_threads()  # as the stage does
    bb = backbone_section(params, backbone)
    ep = read_section(EmbedParams, params, "embed")
    embedder = load_embedder(bb, backbone, params["seed"], ep.precision)
    views = 2 if ep.bands == "rgb+thermal" else 1
    infer = make_infer(embedder.model, views, embedder.image_size)
    size = embedder.image_size
    batch = tf.random.stateless_uniform([ep.batch_size, views, size, size, 3], (0, 0))
    infer(batch).numpy()  # trace outside the clock
    start = time.perf_counter()
    for lo in range(0, n, ep.batch_size):
        infer(batch[: min(ep.batch_size, n - lo)]).numpy()
    return time.perf_counter() - start


def exponent(ns: list[int], seconds: list[float]) -> float:
    if len(ns) < 2:
        return math.nan
    return float(np.polyfit(np.log(ns), np.log(seconds), 1)[0])


def table(ns: list[int], rows: dict[str, dict[int, tuple[float, float]]]) -> str:
    """Seconds and peak RSS per stage and N; ``exponent``: the slope over every N (fixed costs
    such as TensorFlow's start pull it below the asymptotic one), ``last two``: between the two
    largest N (closest to the asymptotic growth)."""
    head = (["stage"] + [f"s @ {n}" for n in ns] + ["exponent", "last two"]
            + [f"MiB @ {n}" for n in ns])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for stage, by_n in rows.items():
        done = [n for n in ns if n in by_n]
        secs = [by_n[n][0] for n in done]
        cells = [f"{by_n[n][0]:.1f}" if n in by_n else "" for n in ns]
        mem = [f"{by_n[n][1]:.0f}" if n in by_n and by_n[n][1] else "" for n in ns]
        last = f"{exponent(done[-2:], secs[-2:]):.2f}" if len(done) > 2 else ""
        lines.append("| " + " | ".join([stage, *cells, f"{exponent(done, secs):.2f}", last,
                                        *mem]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2500, 5000, 10000, 20000])
    ap.add_argument("--backbone", default="dinov2")
    ap.add_argument("--setups", nargs="+", default=["wtl", "matl"],
                    help="train.setups (TG-MATL runs in train_tg besides)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--per-scene", type=float, default=TARGETS_PER_SCENE,
                    help="targets a scene (demo.targets_per_scene; default: the demo's)")
    ap.add_argument("--table", type=Path, metavar="JSON",
                    help="only print the table of an earlier run's JSON (--out's)")
    ap.add_argument("--encoder-only", type=int, metavar="N", help=argparse.SUPPRESS)
    ap.add_argument("--params", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help="keep the repositories here (default: temp)")
    ap.add_argument("--out", type=Path, help="also write the table (markdown) and a JSON beside")
    args = ap.parse_args(argv)
    if args.table:
        saved = json.loads(args.table.read_text())["stages"]
        rows = {name: {int(n): (v["seconds"], v["peak_rss_mib"]) for n, v in by_n.items()}
                for name, by_n in saved.items()}
        print(table(sorted({n for by_n in rows.values() for n in by_n}), rows))
        return
    if args.encoder_only:  # child process: TensorFlow stays out of the parent (its RSS too)
        params = yaml.safe_load(args.params.read_text())
        print(encoder_seconds(params, args.backbone, args.encoder_only))
        return

    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "TQDM_DISABLE": "1"}
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    rows: dict[str, dict[int, tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        workdir = args.workdir or Path(tmp)
        for n in args.sizes:
            repo = workdir / f"n{n}"
            repo.mkdir(parents=True, exist_ok=True)
            copy_repo(ROOT, repo)
            params = bench_params(base, n, args.backbone, args.setups, args.epochs,
                                  args.repeats, args.per_scene)
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            log = repo / "bench.log"
            for name, cmd in stage_commands(dvc_yaml, params):
                seconds, rss = run_stage(cmd, repo, env, log)
                rows.setdefault(name, {})[n] = (seconds, rss)
                print(f"N={n:>6} {name:<22} {seconds:8.1f} s {rss:8.0f} MiB", flush=True)
            model = float(subprocess.run(
                [sys.executable, __file__, "--encoder-only", str(n), "--backbone",
                 args.backbone, "--params", str(repo / "params.yaml")],
                env=env, check=True, capture_output=True, text=True).stdout.split()[-1])
            embed = f"embed@{args.backbone}"
            rows.setdefault(f"{embed} (encoder)", {})[n] = (model, 0.0)
            rows.setdefault(f"{embed} (rest)", {})[n] = (rows[embed][n][0] - model, 0.0)
            print(f"N={n:>6} {'encoder alone':<22} {model:8.1f} s", flush=True)
            if args.out:  # after every N: a long run that is stopped keeps what it measured
                write(args.out, args.sizes, rows, args)
    print(table(args.sizes, rows))


def write(out: Path, ns: list[int], rows: dict[str, dict[int, tuple[float, float]]],
          args: argparse.Namespace) -> None:
    out.write_text(table(ns, rows) + "\n")
    out.with_suffix(".json").write_text(json.dumps({
        "settings": {k: str(v) for k, v in vars(args).items()},
        "stages": {name: {str(n): {"seconds": s, "peak_rss_mib": m} for n, (s, m) in by_n.items()}
                   for name, by_n in rows.items()}}, indent=1))


if __name__ == "__main__":
    main()
