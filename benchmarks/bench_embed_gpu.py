"""Embedding throughput on GPUs: where the time goes, fp32 vs bf16, 1..n devices.

Random-weight encoders built by the project's own loader (``weights: random`` with a ``random:``
architecture): ViT-B/16 (MAE family: width 768, 12 layers, 12 heads, MLP 3072) and ViT-S/14
(DINOv2 family: width 384, 12 layers, 6 heads, MLP 1536), both at 224 px. Input: a few hundred
generated PNG tiles of about 300 px (smooth colour fields plus noise) in a temporary folder, listed
as many times as needed. Three measurements, all in images/s:

- **decode + preprocess**: the extractor's ``tf.data`` pipeline alone (read, PNG decode, family
  mean/std, antialiased bicubic resize to 224, batch), no model; with 1, 2, 4, ... decode threads
  (a private thread pool of that size) and with the extractor's own setting (AUTOTUNE on
  TensorFlow's pool);
- **model**: the extractor's compiled inference on a batch already on the device(s) (no input
  copy), and on one device also with the batch on the host (a host-to-device copy per step);
- **end to end**: :func:`tgmatl.embedding.extraction.extract`, PNG -> Parquet, exactly as stage
  ``embed`` runs it
  (several devices: ``MirroredStrategy``, the model built in its scope).

For ViT-B/16 and ViT-S/14, fp32 and bf16 (``embed.precision``), and 1..n devices (n = visible
GPUs; above 4 GPUs the counts 1, 2, 4, ... and n unless ``--replicas`` says otherwise); plus the
model alone on one device at a few batch sizes. Every timing is preceded by a warm-up (tracing
excluded) and lasts about ``--seconds``. Prints the host's CPU count and TensorFlow's thread
settings, then markdown tables.

    python benchmarks/bench_embed_gpu.py              # a GPU node; sized for under 8 min
    python benchmarks/bench_embed_gpu.py --quick      # tiny encoders at 56/64 px: checks it runs

``--quick`` swaps in 1-layer, width-64 encoders of the same families and patch sizes at 56/64 px
and, where no GPU is visible, splits the CPU into two logical devices so that the mirrored path
runs too (its numbers then say nothing about GPUs). Without a GPU and without ``--quick`` it runs
the real encoders on the CPU (slow).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 224


@dataclass(frozen=True)
class Arch:
    label: str
    family: str
    image_size: int
    random: dict[str, int]


FULL = (
    Arch("ViT-B/16", "mae", SIZE,
         {"patch_size": 16, "hidden_dim": 768, "num_layers": 12, "num_heads": 12,
          "mlp_dim": 3072}),
    Arch("ViT-S/14", "dinov2", SIZE,
         {"patch_size": 14, "hidden_dim": 384, "num_layers": 12, "num_heads": 6,
          "mlp_dim": 1536}),
)
QUICK = (
    Arch("tiny ViT/16 (quick)", "mae", 64,
         {"patch_size": 16, "hidden_dim": 64, "num_layers": 1, "num_heads": 2, "mlp_dim": 128}),
    Arch("tiny ViT/14 (quick)", "dinov2", 56,
         {"patch_size": 14, "hidden_dim": 64, "num_layers": 1, "num_heads": 2, "mlp_dim": 128}),
)


def make_tiles(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` RGB PNGs of 256-344 px: smooth colour fields plus noise (compress like imagery)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(256, 345, 2))
        coarse = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.int16)
        img = np.clip(img + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
        path = folder / f"t{i:04d}.png"
        Image.fromarray(img).save(path)
        paths.append(str(path))
    return paths


def views_of(tiles: list[str], n: int):
    """``n`` samples cycling over ``tiles`` (one view, rgb)."""
    from tgmatl.embedding.extraction import Views

    return Views([f"s{i:07d}" for i in range(n)], [[tiles[i % len(tiles)] for i in range(n)]],
                 [3], ["rgb"])


def load(arch: Arch, precision: str, placement):
    from tgmatl.config import BackboneParams
    from tgmatl.embedding.backbones import load_embedder
    from tgmatl.params import parse_section

    raw = {"family": arch.family, "weights": "random", "image_size": arch.image_size,
           "pooling": "cls", "projected": False, "random": dict(arch.random)}
    params = parse_section(BackboneParams, raw, "bench")
    with placement.scope():
        return load_embedder(params, arch.family, 0, precision)


def timed_rate(step: Callable[[], object], sync: Callable[[object], None], per_step: int,
               seconds: float) -> float:
    """images/s of ``step`` (dispatches one batch of ``per_step`` images, returns its result),
    run back to back for about ``seconds``; ``sync`` waits for a result."""
    sync(step())  # warm-up: tracing, allocator
    t = time.perf_counter()
    for _ in range(2):
        last = step()
    sync(last)
    each = max((time.perf_counter() - t) / 2, 1e-6)
    steps = max(3, int(seconds / each))
    t = time.perf_counter()
    for _ in range(steps):
        last = step()  # dispatched back to back; waiting once at the end keeps the queue full
    sync(last)
    return steps * per_step / (time.perf_counter() - t)


def decode_rate(views, arch: Arch, batch: int, threads: int | None, seconds: float) -> float:
    """images/s of the extractor's tf.data pipeline alone (``threads`` None: its AUTOTUNE)."""
    from tgmatl.embedding.backbones import get_family
    from tgmatl.embedding.extraction import make_dataset

    family = get_family(arch.family)
    ds = make_dataset(views, arch.image_size, "stretch", family.mean, family.std, batch,
                      threads=threads)
    it = iter(ds)
    next(it)  # pipeline started, first batch out
    n, t = 0, time.perf_counter()
    for _, images in it:
        n += int(images.shape[0])
        if time.perf_counter() - t >= seconds:
            break
    return n / (time.perf_counter() - t)


def model_rates(embedder, placement, batch: int, seconds: float) -> tuple[float, float | None]:
    """(inputs on the device(s), inputs on the host) images/s of the compiled inference;
    the second only on one device."""
    import tensorflow as tf

    from tgmatl.embedding.extraction import make_infer, make_mirrored_infer

    size = embedder.image_size
    host = tf.random.uniform((batch, 1, size, size, 3), seed=1)
    if placement.strategy is None:
        device = placement.devices[0]
        infer = make_infer(embedder.model, 1, size, device)
        with tf.device(device):
            on_device = tf.identity(host)
        sync = lambda out: out.numpy()  # noqa: E731
        dev = timed_rate(lambda: infer(on_device), sync, batch, seconds)
        return dev, timed_rate(lambda: infer(host), sync, batch, seconds)
    strategy = placement.strategy
    # one batch, split across the replicas and copied to them once, then reused every step
    dist = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(host).batch(batch))
    shares = next(iter(dist))
    infer = make_mirrored_infer(embedder.model, 1, size, strategy, dist.element_spec)

    def sync(out) -> None:
        for part in strategy.experimental_local_results(out):
            part.numpy()

    return timed_rate(lambda: infer(shares), sync, batch, seconds), None


def end_to_end_rate(embedder, placement, tiles: list[str], images: int, batch: int,
                    out: Path) -> float:
    from tgmatl.embedding.extraction import extract

    warm = views_of(tiles, 2 * batch)  # traces and fills the pipeline's pools first
    extract(embedder, warm, out, "stretch", batch, 256, progress=False, placement=placement)
    stats = extract(embedder, views_of(tiles, images), out, "stretch", batch, 256,
                    progress=False, placement=placement)
    return stats["images_per_s"]


def replica_counts(n: int, spec: str | None) -> list[int]:
    if spec:
        counts = sorted({int(v) for v in spec.split(",")})
        if counts[0] < 1 or counts[-1] > n:
            sys.exit(f"--replicas {spec}: counts must lie in 1..{n}")
        return counts
    if n <= 4:
        return list(range(1, n + 1))
    return sorted({*(2**k for k in range(n.bit_length()) if 2**k <= n), n})


def thread_counts(cpus: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 <= cpus:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == cpus else [*counts, cpus]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny encoders, a few seconds of work")
    ap.add_argument("--tiles", type=int, help="distinct PNG tiles (default 384; quick 24)")
    ap.add_argument("--images", type=int,
                    help="images per end-to-end run (default 8192; quick 64)")
    ap.add_argument("--batch", type=int, help="global batch (default 256; quick 16)")
    ap.add_argument("--batches", help="model-alone batch sizes on one device (default "
                    "32,128,512; quick 32)")
    ap.add_argument("--seconds", type=float, help="length of each timing (default 2; quick 0.15)")
    ap.add_argument("--replicas", help="device counts to run, e.g. 1,2,8 (default 1..n)")
    ap.add_argument("--precisions", default="float32,bfloat16")
    ap.add_argument("--cpu-devices", type=int,
                    help="without GPUs: split the CPU into this many logical devices for the "
                    "mirrored path (default: 2 with --quick, else 1)")
    args = ap.parse_args()
    quick = args.quick
    tiles_n = args.tiles or (24 if quick else 384)
    images = args.images or (64 if quick else 8192)
    batch = args.batch or (16 if quick else 256)
    batches = [int(b) for b in (args.batches or ("32" if quick else "32,128,512"))
               .split(",")]
    seconds = args.seconds or (0.15 if quick else 2.0)
    precisions = args.precisions.split(",")
    archs = QUICK if quick else FULL

    from tgmatl.tfsetup import start_tensorflow

    tf = start_tensorflow()
    gpus_physical = tf.config.list_physical_devices("GPU")
    cpu_devices = args.cpu_devices or (2 if quick else 1)
    if not gpus_physical and cpu_devices > 1:  # before TensorFlow initialises its devices
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_devices)])
    from tgmatl.embedding.extraction import configure_threads, place, visible_gpus

    configure_threads()  # as stage embed does
    import keras

    gpus = visible_gpus()
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    counts = replica_counts(len(devices), args.replicas)
    cpus = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    print(f"host: {cpus} CPUs ({usable} usable by this process); TensorFlow {tf.__version__}, "
          f"intra-op threads {intra or 'default (all cores)'}, inter-op threads "
          f"{inter or 'default'}; tf.data AUTOTUNE decode parallelism is capped by the intra-op "
          f"pool ({usable})")
    kind = "GPU" if gpus else "logical CPU device"
    print(f"devices: {', '.join(devices)} ({kind}s); runs over {counts} device(s); "
          f"global batch {batch}; load average {os.getloadavg()[0]:.2f}", flush=True)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        tiles = make_tiles(Path(tmp) / "tiles", tiles_n)
        print(f"{tiles_n} PNG tiles of 256-344 px written; end to end over {images} images",
              flush=True)

        # 1. decode + preprocess alone (depends on the input size only)
        decode_rows = []
        decode_auto: dict[int, float] = {}
        for size in sorted({a.image_size for a in archs}):
            arch = next(a for a in archs if a.image_size == size)
            views = views_of(tiles, images)
            for threads in [*thread_counts(usable), None]:
                rate = decode_rate(views, arch, batch, threads, seconds)
                if threads is None:
                    decode_auto[size] = rate
                label = "AUTOTUNE (the extractor)" if threads is None else str(threads)
                decode_rows.append([f"{size} px", label, f"{rate:.0f}"])
        print("\nDecode + preprocess alone (tf.data: read, PNG decode, normalise, antialiased "
              "bicubic resize, batch; no model)\n")
        print(table(["to", "decode threads", "img/s"], decode_rows), flush=True)

        # 2. + 3. model alone and end to end, per encoder, precision and device count
        rows, sweep = [], []
        for arch in archs:
            for precision in precisions:
                for count in counts:
                    placement = place(devices[:count])
                    embedder = load(arch, precision, placement)
                    if count == 1:
                        for b in batches:
                            dev, hst = model_rates(embedder, placement, b, seconds)
                            sweep.append([arch.label, precision, str(b), f"{dev:.0f}",
                                          f"{hst:.0f}"])
                    dev, hst = model_rates(embedder, placement, batch, seconds)
                    e2e = end_to_end_rate(embedder, placement, tiles, images, batch,
                                          Path(tmp) / "e.parquet")
                    cap = min(dev, decode_auto[arch.image_size])
                    rows.append([arch.label, precision, str(count), f"{dev:.0f}",
                                 "-" if hst is None else f"{hst:.0f}",
                                 f"{decode_auto[arch.image_size]:.0f}", f"{e2e:.0f}",
                                 f"{100 * e2e / cap:.0f}%",
                                 "decode" if decode_auto[arch.image_size] < dev else "model"])
                    print(f"  {arch.label} {precision} x{count}: model {dev:.0f}, end to end "
                          f"{e2e:.0f} img/s", flush=True)
                    del embedder, placement
                    keras.backend.clear_session()
                    gc.collect()

    print("\nModel alone on one device by batch size (img/s; host: the batch copied from the "
          "host every step)\n")
    print(table(["encoder", "precision", "batch", "inputs on device", "inputs on host"], sweep))
    print(f"\nPer encoder, precision and device count (global batch {batch}; img/s)\n")
    print(table(["encoder", "precision", "devices", "model alone", "model, host inputs",
                 "decode alone", "end to end", "e2e / min(model, decode)", "slower part"],
                rows))
    print(f"\n{time.perf_counter() - started:.0f} s; load average after "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
