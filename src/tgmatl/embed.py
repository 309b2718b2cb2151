"""Stage ``embed``: one frozen encoder over every sample, streamed to Parquet.

Pipeline: ``tf.data`` reads and decodes the PNGs in parallel and preprocesses them
(:mod:`tgmatl.backbones.preprocessing`: family mean/std, ``embed.resize``, bicubic to the
encoder's size) while the previous batch runs through the encoder, a ``tf.function`` with a fixed
input signature (traced once). Embeddings go to Parquet one row group (``embed.row_group_size``
rows) at a time through a ``ParquetWriter`` on a temporary file renamed at the end, so memory does
not grow with the number of samples and an interrupted run leaves no output.

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
n_samples, keras_hub_version, keras_version, tensorflow_version (+ seed, random_arch when
untrained). :func:`read_embeddings` reads it back.

A backbone with ``family: precomputed`` brings its own vectors (a ``.npy`` or ``.parquet`` file,
:mod:`tgmatl.precomputed`): no images are read and no encoder runs; the output has the same
columns, with metadata describing the file instead of an encoder.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tgmatl.config import BackboneParams, EmbedParams
from tgmatl.errors import InputError
from tgmatl.io import atomic_path
from tgmatl.samples import SAMPLES_FILE, read_samples

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("sample_id", "image_path", "thermal_path", "bands")
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
):
    """``tf.data``: (sample_id, images ``(B, V, S, S, 3)``), decoded in parallel, in order."""
    import tensorflow as tf

    from tgmatl.backbones import preprocessing as pre

    channels = list(views.channels)

    def load(sid, *paths):
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
        return sid, tf.stack(out)

    ds = tf.data.Dataset.from_tensor_slices((views.sample_ids, *views.paths))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(2)


_INFER_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_infer(model, n_views: int, image_size: int):
    """Compiled inference: ``(B, V, S, S, 3)`` -> ``(B, V * D)``, views concatenated.

    Traced once per model and view count (cached), so repeated extractions skip the tracing.
    """
    import tensorflow as tf

    cached = _INFER_CACHE.setdefault(model, {})
    if (n_views, image_size) in cached:
        return cached[(n_views, image_size)]
    spec = tf.TensorSpec([None, n_views, image_size, image_size, 3], tf.float32)

    @tf.function(input_signature=[spec])
    def infer(x):
        flat = tf.reshape(x, [-1, image_size, image_size, 3])
        emb = model(flat, training=False)
        return tf.reshape(emb, [tf.shape(x)[0], -1])

    cached[(n_views, image_size)] = infer
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
) -> dict[str, float]:
    """Embed every sample of ``views`` with ``embedder`` into the Parquet file ``out``."""
    import tensorflow as tf
    from tqdm import tqdm

    n_views = len(views.paths)
    dim = embedder.dim * n_views
    meta = {**embedder.metadata, **(metadata or {})}
    meta.update(dim=str(dim), n_samples=str(len(views.sample_ids)), resize=resize)
    meta["views"] = ",".join(views.names)
    schema = pa.schema(
        [("sample_id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))],
        metadata={k: str(v) for k, v in meta.items()},
    )
    dataset = make_dataset(
        views, embedder.image_size, resize, embedder.mean, embedder.std, batch_size
    )
    infer = make_infer(embedder.model, n_views, embedder.image_size)
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

        try:
            for sid, images in dataset:
                emb = infer(images).numpy().astype(np.float32, copy=False)
                ids_buf.append(sid.numpy().astype(str))
                emb_buf.append(emb)
                buffered += len(emb)
                if buffered >= row_group_size:
                    flush(final=False)
                bar.update(len(emb))
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
    return {"n_samples": n, "dim": dim, "seconds": seconds, "images_per_s": n / seconds}


def embed_samples(
    samples_dir: str | Path,
    out: str | Path,
    name: str,
    backbone: BackboneParams,
    embed: EmbedParams,
    seed: int,
    progress: bool = True,
) -> dict[str, float]:
    """Stage entry: embed ``samples_dir`` with ``backbones.<name>`` into ``out``.

    ``family: precomputed`` runs no encoder: its stored vectors are checked and written in the
    same contract (:func:`tgmatl.precomputed.write_precomputed`; ``embed.*`` other than
    ``row_group_size`` does not apply).
    """
    if backbone.family == "precomputed":
        from tgmatl.precomputed import write_precomputed

        return write_precomputed(samples_dir, out, name, backbone, embed.row_group_size)

    from tgmatl.backbones import load_embedder

    configure_threads()
    views = read_views(samples_dir, embed.bands)  # fail on bad input before loading a model
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
