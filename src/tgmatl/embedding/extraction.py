"""Stage ``embed``: one frozen encoder over every sample, streamed to Parquet.

Pipeline: ``tf.data`` reads and decodes the PNGs in parallel and preprocesses them
(:mod:`tgmatl.embedding.backbones.preprocessing`: family mean/std, ``embed.resize``, bicubic to the
encoder's size) while the previous batch runs through the encoder, a ``tf.function`` with a fixed
input signature (traced once). Embeddings go to Parquet one row group (``embed.row_group_size``
rows) at a time through a ``ParquetWriter`` on a temporary file renamed at the end, so memory does
not grow with the number of samples and an interrupted run leaves no output. A batch's result is
fetched to the host only after the next batch has been dispatched, so an accelerator is not left
idle while the host converts and writes.

Devices (``embed.devices``, :func:`resolve_devices`): one device runs the encoder as above, pinned
to it. Several GPUs run it under ``tf.distribute.MirroredStrategy``: the model is built in the
strategy's scope (one copy of the weights per GPU), each batch of ``embed.batch_size`` (the global
batch) is split across the replicas in order, and every row's position travels with it, so the
rows still come out in ``samples.parquet`` order; the embeddings equal the one-device ones to 1e-5.

Bands (``embed.bands``), from ``samples.parquet``'s ``image_path`` / ``thermal_path`` / ``bands``:
- ``rgb``: the 3-band image.
- ``thermal``: the single-band ``thermal_path`` image, or ``image_path`` itself when the survey is
  single-band (``bands == 1``, no ``thermal_path``); the band is replicated to three channels.
- ``rgb+thermal``: both through the same encoder, the two vectors **concatenated**
  ``[rgb | thermal]`` (width 2D), so a downstream model can weight each modality.
A sample lacking what the mode needs is an :class:`~tgmatl.errors.InputError` naming it.

Output ``<name>.parquet``: ``sample_id`` (string), ``embedding`` (``fixed_size_list<float32>[D]``),
rows in ``samples.parquet`` order (sorted by ``sample_id``); file metadata (all strings): backbone,
family, weights, weights_kind, untrained (``true`` for random weights), image_size, pooling,
projected, precision (the compute precision; stored values are float32), bands, resize, dim,
n_samples, replicas (devices the encoder ran on), keras_hub_version, keras_version,
tensorflow_version (+ seed, random_arch when untrained). :func:`read_embeddings` reads it back.

A backbone with ``family: precomputed`` brings its own vectors (a ``.npy`` or ``.parquet`` file,
:mod:`tgmatl.embedding.precomputed`): no images are read and no encoder runs; the output has the
same columns, with metadata describing the file instead of an encoder. One with ``family:
classical`` gets hand-crafted descriptors (:mod:`tgmatl.embedding.backbones.classical`, not a
ViT: an offline baseline), computed without TensorFlow, in the same contract.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tgmatl.config import BackboneParams, EmbedParams
from tgmatl.errors import InputError
from tgmatl.io import atomic_path
from tgmatl.params import ParamsError
from tgmatl.survey.samples import SAMPLES_FILE, read_samples

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("sample_id", "image_path", "thermal_path", "bands")
CPU = "/device:CPU:0"
_BANDS_FAILURE = re.compile(r"\[BANDS\] \[(.*?)\] \[(.*?)\] \[(\d+)\] \[(\d+)\]")


def configure_threads() -> None:
    """One inter-op thread: measured steadier and faster for ViT inference on few cores.

    Must run before TensorFlow starts its runtime; later calls are no-ops (logged).
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialised; inter-op threads left as they are")


def visible_gpus() -> list[str]:
    """TensorFlow's logical GPU devices (``/device:GPU:<i>``)."""
    import tensorflow as tf

    return [d.name for d in tf.config.list_logical_devices("GPU")]


def resolve_devices(spec: str | int, gpus: Sequence[str] | None = None) -> list[str]:
    """The devices ``embed.devices`` selects, given the visible GPUs (default: TensorFlow's).

    ``cpu``: the CPU even where GPUs are visible; ``all``: every visible GPU; a count ``n``: the
    first ``n`` GPUs; ``auto``: every visible GPU, else the CPU. Asking for GPUs that are not
    there is an error naming the key, never a quiet run on fewer devices or on the CPU.
    """
    if spec == "cpu":
        return [CPU]
    if spec not in ("auto", "all") and (isinstance(spec, bool) or not isinstance(spec, int)
                                        or spec < 1):
        raise ParamsError(f"embed.devices: {spec!r} is not auto, cpu, all or a GPU count >= 1")
    found = visible_gpus() if gpus is None else list(gpus)
    if spec == "auto":
        return found or [CPU]
    if not found:
        raise ParamsError(
            f"embed.devices: {spec} asks for GPUs and TensorFlow sees none (no CUDA device, or "
            "CUDA_VISIBLE_DEVICES hides them); set embed.devices: cpu or auto"
        )
    if spec == "all":
        return found
    assert isinstance(spec, int)
    if spec > len(found):
        raise ParamsError(
            f"embed.devices: {spec} GPUs requested, only {len(found)} visible "
            f"({', '.join(found)})"
        )
    return found[:spec]


@dataclass(frozen=True)
class Placement:
    """Where the encoder runs: one device, or a MirroredStrategy over several (:func:`place`)."""

    devices: tuple[str, ...]
    strategy: Any = None  # tf.distribute.MirroredStrategy when there are several devices

    @property
    def replicas(self) -> int:
        return len(self.devices)

    def scope(self):
        """Build or load the model inside this, so its weights live on the device(s)."""
        import tensorflow as tf

        return self.strategy.scope() if self.strategy is not None else tf.device(self.devices[0])


def place(devices: Sequence[str]) -> Placement:
    """One device: no strategy (the plain path). Several: a MirroredStrategy over exactly them
    (GPUs from :func:`resolve_devices`, or logical CPU devices in the tests)."""
    if not devices:
        raise ValueError("no device to run the encoder on")
    if len(set(devices)) != len(devices):
        raise ValueError(f"a device is listed twice in {list(devices)}")
    if len(devices) == 1:
        return Placement(tuple(devices))
    import tensorflow as tf

    return Placement(tuple(devices), tf.distribute.MirroredStrategy(list(devices)))


@dataclass(frozen=True)
class Views:
    """Per sample, the image files fed to the encoder (1 or 2 views) and their band counts."""

    sample_ids: list[str]
    paths: list[list[str]]  # one list per view, aligned with sample_ids
    channels: list[int]  # expected band count of each view's files
    names: list[str]  # "rgb" / "thermal"


def read_views(samples_dir: str | Path, bands: str) -> Views:
    """The files each sample contributes under ``embed.bands``; errors name the sample."""
    samples_dir = Path(samples_dir)
    table_path = samples_dir / SAMPLES_FILE
    df = read_samples(table_path, REQUIRED_COLUMNS)

    rgb, thermal = [], []
    for sid, image, therm, nb in df.itertuples(index=False, name=None):
        has_thermal = isinstance(therm, str) and therm != ""
        where = f"{table_path}: sample {sid} ({image})"
        if bands in ("rgb", "rgb+thermal") and nb != 3:
            raise InputError(
                f"{where}: has {nb} band(s), embed.bands: {bands} needs a 3-band image; "
                "set embed.bands: thermal for a single-band survey"
            )
        if bands == "rgb+thermal" and not has_thermal:
            raise InputError(
                f"{where}: no thermal_path, embed.bands: rgb+thermal needs one; "
                "set embed.bands: rgb"
            )
        if bands == "thermal" and not has_thermal and nb != 1:
            raise InputError(
                f"{where}: no thermal_path and a {nb}-band image, so no thermal band for "
                "embed.bands: thermal; set embed.bands: rgb"
            )
        rgb.append(image)
        thermal.append(therm if has_thermal else image)

    if bands == "rgb":
        paths, channels, names = [rgb], [3], ["rgb"]
    elif bands == "thermal":
        paths, channels, names = [thermal], [1], ["thermal"]
    elif bands == "rgb+thermal":
        paths, channels, names = [rgb, thermal], [3, 1], ["rgb", "thermal"]
    else:
        raise ValueError(f"unknown bands mode {bands!r}")
    ids = df["sample_id"].astype(str).tolist()
    full = [[str(samples_dir / p) for p in view] for view in paths]
    for view in full:
        for sid, p in zip(ids, view, strict=True):
            if not Path(p).is_file():
                raise InputError(f"{table_path}: sample {sid}: image file {p} not found")
    return Views(ids, full, channels, names)


def make_dataset(
    views: Views,
    image_size: int,
    resize: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    batch_size: int,
    positions: bool = False,
    threads: int | None = None,
):
    """``tf.data``: (sample_id, images ``(B, V, S, S, 3)``), decoded in parallel, in order.

    ``positions``: the row's position in ``views`` (int64) instead of its sample_id (the
    mirrored path: it travels to every device with the images, where TensorFlow keeps strings on
    the host; the host puts rows back in order by it). ``threads``: that
    many decode calls on a private pool of that size (benchmarks) instead of AUTOTUNE on
    TensorFlow's shared pool.
    """
    import tensorflow as tf

    from tgmatl.embedding.backbones import preprocessing as pre

    channels = list(views.channels)

    def load(sid, pos, *paths):
        out = []
        for path, expected in zip(paths, channels, strict=True):
            img = pre.decode_png(tf.io.read_file(path))
            got = tf.shape(img)[-1]
            check = tf.debugging.Assert(
                tf.equal(got, expected), ["BANDS", sid, path, got, expected]
            )
            with tf.control_dependencies([check]):
                img = pre.to_three_channels(img)
            out.append(pre.preprocess(img, image_size, resize, mean, std))
        return (pos if positions else sid), tf.stack(out)

    index = tf.range(len(views.sample_ids), dtype=tf.int64)
    ds = tf.data.Dataset.from_tensor_slices((views.sample_ids, index, *views.paths))
    calls = tf.data.AUTOTUNE if threads is None else threads
    ds = ds.map(load, num_parallel_calls=calls, deterministic=True)
    ds = ds.batch(batch_size).prefetch(2)
    if threads is not None:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        ds = ds.with_options(options)
    return ds


_INFER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(model, n_views: int, image_size: int) -> Callable:
    """``(B, V, S, S, 3)`` -> ``(B, V * D)``: every view through the model, views concatenated."""
    import tensorflow as tf

    def run(flat):
        emb = model(flat, training=False)
        return tf.reshape(emb, [-1, n_views * emb.shape[-1]])

    def forward(x):
        flat = tf.reshape(x, [-1, image_size, image_size, 3])
        # A replica's share of a last batch may be empty (B = 0). The encoder is not run on it:
        # some kernels (oneDNN's, on AVX-512 CPUs) mis-shape an empty batch inside the model
        # (the patch count of the position-embedding add comes out wrong). One zero image goes
        # through instead and its row is dropped, so the empty result keeps the right width.
        return tf.cond(tf.shape(flat)[0] > 0, lambda: run(flat),
                       lambda: run(tf.zeros([n_views, image_size, image_size, 3]))[:0])

    return forward


def make_infer(model, n_views: int, image_size: int, device: str | None = None):
    """Compiled inference: ``(B, V, S, S, 3)`` -> ``(B, V * D)``, views concatenated.

    ``device``: pin it there (the model's weights must be there too). Traced once per model,
    view count and device (cached), so repeated extractions skip the tracing.
    """
    import tensorflow as tf

    cached = _INFER_CACHE.setdefault(model, {})
    key = (n_views, image_size, device)
    if key in cached:
        return cached[key]
    spec = tf.TensorSpec([None, n_views, image_size, image_size, 3], tf.float32)
    forward = _forward(model, n_views, image_size)

    @tf.function(input_signature=[spec])
    def infer(x):
        if device is None:
            return forward(x)
        with tf.device(device):
            return forward(x)

    cached[key] = infer
    return infer


def make_mirrored_infer(model, n_views: int, image_size: int, strategy, element_spec):
    """The same per replica under ``strategy`` (the model built in its scope): per-replica
    images in, per-replica embeddings out. Traced once per model and view count (cached)."""
    import tensorflow as tf

    cached = _INFER_CACHE.setdefault(model, {})
    key = ("mirrored", n_views, image_size)
    if key in cached:
        return cached[key]
    forward = _forward(model, n_views, image_size)

    @tf.function(input_signature=[element_spec])
    def infer(images):
        return strategy.run(forward, args=(images,))

    cached[key] = infer
    return infer


def extract(
    embedder,
    views: Views,
    out: str | Path,
    resize: str,
    batch_size: int,
    row_group_size: int,
    metadata: dict[str, str] | None = None,
    progress: bool = True,
    placement: Placement | None = None,
) -> dict[str, float]:
    """Embed every sample of ``views`` with ``embedder`` into the Parquet file ``out``.

    ``placement``: where ``embedder`` was built (:func:`place`; its model must have been
    loaded inside ``placement.scope()``); None: TensorFlow's default device, no pinning.
    """
    import tensorflow as tf
    from tqdm import tqdm

    strategy = None if placement is None else placement.strategy
    replicas = 1 if strategy is None else strategy.num_replicas_in_sync
    n_views = len(views.paths)
    dim = embedder.dim * n_views
    meta = {**embedder.metadata, **(metadata or {})}
    meta.update(dim=str(dim), n_samples=str(len(views.sample_ids)), resize=resize)
    meta["views"] = ",".join(views.names)
    meta["replicas"] = str(replicas)
    schema = pa.schema(
        [("sample_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))],
        metadata={k: str(v) for k, v in meta.items()},
    )
    dataset = make_dataset(
        views,
        embedder.image_size,
        resize,
        embedder.mean,
        embedder.std,
        batch_size,
        positions=strategy is not None,
    )
    if strategy is None:
        device = None if placement is None else placement.devices[0]
        infer = make_infer(embedder.model, n_views, embedder.image_size, device)
        batches = ((sid, infer(images)) for sid, images in dataset)
        fetch = _fetch_single
    else:
        # Each global batch is split in order across the replicas (the last one may leave some
        # replicas a short or empty share); positions come along to put the rows back in order.
        dist = strategy.experimental_distribute_dataset(dataset)
        infer = make_mirrored_infer(
            embedder.model, n_views, embedder.image_size, strategy, dist.element_spec[1]
        )
        batches = ((pos, infer(images)) for pos, images in dist)
        ids_all = np.asarray(views.sample_ids, dtype=str)
        done = 0

        def fetch(pos, emb) -> tuple[np.ndarray, np.ndarray]:
            nonlocal done
            ids, rows = _fetch_mirrored(strategy, pos, emb, ids_all, done)
            done += len(rows)
            return ids, rows

    ids_buf: list[np.ndarray] = []
    emb_buf: list[np.ndarray] = []
    buffered = 0
    start = time.perf_counter()
    with (
        atomic_path(out) as tmp,
        pq.ParquetWriter(tmp, schema, compression="zstd") as writer,
        tqdm(
            total=len(views.sample_ids),
            unit="img",
            desc=f"embed {meta.get('backbone', '')}".strip(),
            disable=not progress,
        ) as bar,
    ):

        def flush(final: bool) -> None:
            nonlocal buffered, ids_buf, emb_buf
            if not buffered:
                return
            ids = np.concatenate(ids_buf)
            emb = np.concatenate(emb_buf)
            cut = len(ids) if final else (len(ids) // row_group_size) * row_group_size
            for lo in range(0, cut, row_group_size):
                hi = min(lo + row_group_size, cut)
                column = pa.FixedSizeListArray.from_arrays(pa.array(emb[lo:hi].ravel()), dim)
                writer.write_table(
                    pa.Table.from_arrays([pa.array(ids[lo:hi]), column], schema=schema),
                    row_group_size=row_group_size,
                )
            ids_buf, emb_buf = [ids[cut:]], [emb[cut:]]
            buffered = len(ids) - cut

        def keep(batch) -> None:
            nonlocal buffered
            ids, emb = fetch(*batch)
            ids_buf.append(ids)
            emb_buf.append(emb)
            buffered += len(emb)
            if buffered >= row_group_size:
                flush(final=False)
            bar.update(len(emb))

        try:
            # One batch in flight: the next batch is dispatched before this one is fetched, so
            # the device computes while the host waits for, converts and writes the previous.
            pending = None
            for batch in batches:
                if pending is not None:
                    keep(pending)
                pending = batch
            if pending is not None:
                keep(pending)
        except tf.errors.InvalidArgumentError as exc:
            found = _BANDS_FAILURE.search(exc.message)
            if not found:
                raise
            sid, path, got, expected = found.groups()
            raise InputError(
                f"sample {sid}: {path} has {got} band(s) where {expected} were expected "
                "(the bands column of samples.parquet disagrees with the file)"
            ) from None
        flush(final=True)
    seconds = time.perf_counter() - start
    n = len(views.sample_ids)
    return {
        "n_samples": n,
        "dim": dim,
        "seconds": seconds,
        "images_per_s": n / seconds,
        "replicas": replicas,
    }


def _fetch_single(sid, emb) -> tuple[np.ndarray, np.ndarray]:
    return sid.numpy().astype(str), emb.numpy().astype(np.float32, copy=False)


def _fetch_mirrored(strategy, pos, emb, ids_all: np.ndarray, done: int):
    """One distributed batch to the host: replicas' rows concatenated, put in position order.

    The shares come back in replica order, which is the input order; sorting by position makes
    the result independent of that, and the check catches a lost or repeated row.
    """
    positions = np.concatenate([p.numpy() for p in strategy.experimental_local_results(pos)])
    rows = np.concatenate([e.numpy() for e in strategy.experimental_local_results(emb)])
    order = np.argsort(positions, kind="stable")
    positions = positions[order]
    if len(rows) != len(positions) or not np.array_equal(
        positions, np.arange(done, done + len(positions))
    ):
        raise RuntimeError(
            f"replica results do not cover rows {done}..{done + len(positions) - 1} exactly once"
        )
    return ids_all[positions], rows[order].astype(np.float32, copy=False)


def embed_samples(
    samples_dir: str | Path,
    out: str | Path,
    name: str,
    backbone: BackboneParams,
    embed: EmbedParams,
    seed: int,
    progress: bool = True,
    devices: Sequence[str] | None = None,
) -> dict[str, float]:
    """Stage entry: embed ``samples_dir`` with ``backbones.<name>`` into ``out``.

    ``family: precomputed`` runs no encoder: its stored vectors are checked and written in the
    same contract (:func:`tgmatl.embedding.precomputed.write_precomputed`; ``embed.*`` other than
    ``row_group_size`` does not apply).

    ``devices``: TensorFlow device names to run on instead of what ``embed.devices`` selects
    (the tests' mirrored run over logical CPU devices; ``embed.devices`` counts GPUs only).
    """
    if backbone.family == "precomputed":
        from tgmatl.embedding.precomputed import write_precomputed

        return write_precomputed(samples_dir, out, name, backbone, embed.row_group_size)
    if backbone.family == "classical":  # hand-crafted descriptors: no TensorFlow
        from tgmatl.embedding.backbones.classical import embed_classical

        views = read_views(samples_dir, embed.bands)
        return embed_classical(views, out, name, backbone, embed.bands, embed.row_group_size,
                               progress=progress)

    from tgmatl.embedding.backbones import load_embedder

    configure_threads()
    views = read_views(samples_dir, embed.bands)  # fail on bad input before loading a model
    placement = place(resolve_devices(embed.devices) if devices is None else devices)
    if placement.replicas > 1:
        log.info("%s: %d replicas (MirroredStrategy) on %s, global batch %d", name,
                 placement.replicas, ", ".join(placement.devices), embed.batch_size)
    with placement.scope():  # the weights go to the device(s) that run the model
        embedder = load_embedder(backbone, name, seed, embed.precision)
    if embedder.untrained:
        log.warning(
            "backbones.%s: random, UNTRAINED weights (the offline demo); results say nothing "
            "about %s. See README for real weights.",
            name,
            backbone.family,
        )
    stats = extract(
        embedder,
        views,
        out,
        embed.resize,
        embed.batch_size,
        embed.row_group_size,
        metadata={"bands": embed.bands},
        progress=progress,
        placement=placement,
    )
    log.info(
        "%s: %d samples -> %s (dim %d, %.1f img/s)",
        name,
        stats["n_samples"],
        out,
        stats["dim"],
        stats["images_per_s"],
    )
    return stats


def read_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """``(sample_ids (N,) str, embeddings (N, D) float32, file metadata)`` of an embed output."""
    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    meta.pop("ARROW:schema", None)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    ids = np.asarray(table.column("sample_id").to_pylist(), dtype=str)
    return ids, values.reshape(len(ids), dim), meta
