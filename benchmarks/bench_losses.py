"""Loss + gradient time and peak memory of the triplet losses, side by side in one run.

Each (loss, batch size) runs in a fresh subprocess: TensorFlow's CPU allocator reports no memory
statistics (``get_memory_info`` gives zeros), so peak memory is the growth of the process's peak
RSS (``ru_maxrss``) over a baseline taken after a warm-up call at batch 4 (imports, tracing and
runtime set-up excluded). Time: median of ``--repeats`` warm calls of a ``tf.function`` computing
the loss and its gradient w.r.t. the embeddings.

Complexity: batch-all and TG-MATL (two batch-all terms) sum their triplets by sorted counts
(``triplet.hinge_sum``): [B, B] tensors, O(B²) memory and O(B² log B) time, like batch-hard's
O(B²); ``batch_all_explicit``, the literal reference, holds [B, B, B] tensors: O(B³). The largest
batch fitting a memory budget is solved from the measured bytes per B² (B³) at the largest size.

    .venv/bin/python benchmarks/bench_losses.py [--sizes 32 128 512] [--budget-gib 4] [--verify]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

LOSSES = ("batch_all", "batch_all_explicit", "batch_hard", "tg_matl")
CUBIC = {"batch_all": False, "batch_all_explicit": True, "batch_hard": False, "tg_matl": False}


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def worker(loss: str, b: int, dim: int, repeats: int, jit: bool = False) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from tgmatl.training.losses import triplet

    fns = {
        "batch_all": lambda e, y, z, m: triplet.batch_all_triplet_loss(e, y, 0.1),
        "batch_all_explicit": lambda e, y, z, m: triplet.batch_all_triplet_loss_explicit(e, y, 0.1),
        "batch_hard": lambda e, y, z, m: triplet.batch_hard_triplet_loss(e, y, 0.1),
        "tg_matl": lambda e, y, z, m: triplet.tg_matl_loss(e, y, z, m, 0.1, 0.5, "all"),
    }
    fn = fns[loss]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, dim], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None], tf.float32),
        ],
        jit_compile=jit,
    )
    def step(e, y, z, m):
        with tf.GradientTape() as tape:
            tape.watch(e)
            value = fn(e, y, z, m)
        return value, tape.gradient(value, e)

    def inputs(n):
        rng = np.random.default_rng(0)
        e = rng.normal(size=(n, dim)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        return (
            tf.constant(e),
            tf.constant(rng.integers(0, 3, n).astype(np.int32)),
            tf.constant(rng.integers(0, 3, n).astype(np.int32)),
            tf.constant((rng.random(n) < 0.3).astype(np.float32)),
        )

    step(*inputs(4))  # trace + runtime set-up
    args = inputs(b)
    base = _maxrss_bytes()
    for _ in range(3):
        value, grad = step(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        value, grad = step(*args)
        _ = grad.numpy()
        times.append(time.perf_counter() - t0)
    return {
        "loss": loss,
        "batch": b,
        "ms": 1e3 * float(np.median(times)),
        "peak_mib": (_maxrss_bytes() - base) / 2**20,
        "value": float(value),
    }


def run_one(loss: str, b: int, dim: int, repeats: int, jit: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--worker", loss, str(b), str(dim), str(repeats), str(jit)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--dim", type=int, default=128, help="embedding width (projection output)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--budget-gib", type=float, default=4.0)
    ap.add_argument("--verify", action="store_true", help="run batch-all at the solved batch")
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    ap.add_argument("--jit", action="store_true", help="tf.function(jit_compile=True) (XLA)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        loss, b, dim, repeats, jit = args.worker
        print(json.dumps(worker(loss, int(b), int(dim), int(repeats), jit == "True")))
        return

    rows = [
        run_one(loss, b, args.dim, args.repeats, args.jit)
        for b in args.sizes
        for loss in args.losses
    ]
    ref = {r["batch"]: r["ms"] for r in rows if r["loss"] == "batch_hard"}
    print(
        f"loss + gradient, D={args.dim}, CPU threads: {os.cpu_count()}, "
        f"median of {args.repeats}, jit_compile={args.jit}"
    )
    print("| loss | B | ms | x batch-hard | peak MiB | bytes / B³ |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        per = r["peak_mib"] * 2**20 / r["batch"] ** 3
        ratio = r["ms"] / ref[r["batch"]] if r["batch"] in ref else float("nan")
        print(
            f"| {r['loss']} | {r['batch']} | {r['ms']:.2f} | {ratio:.1f} | "
            f"{r['peak_mib']:.1f} | {per:.1f} |"
        )
    budget = args.budget_gib * 2**30
    big = max(args.sizes)
    print(f"\nlargest batch within {args.budget_gib:g} GiB (from bytes / B² or B³ at B={big}):")
    for loss in args.losses:
        r = next(r for r in rows if r["loss"] == loss and r["batch"] == big)
        if CUBIC[loss]:
            per = r["peak_mib"] * 2**20 / big**3
            b_max = int((budget / per) ** (1 / 3))
            note = "O(B³)"
        else:
            per = r["peak_mib"] * 2**20 / big**2
            b_max = int((budget / per) ** 0.5)
            note = "O(B²)"
        print(f"  {loss}: {note}, ~{per:.1f} bytes per B^{3 if CUBIC[loss] else 2} -> B ≈ {b_max}")
        if args.verify and loss == "batch_all":
            v = run_one(loss, b_max, args.dim, 2, args.jit)
            print(f"    verified: B={b_max} peaks at {v['peak_mib'] / 1024:.2f} GiB")


if __name__ == "__main__":
    main()
