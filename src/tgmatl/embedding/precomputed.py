"""Bring your own embeddings: a backbone with ``family: precomputed`` reads stored vectors.

``backbones.<name>.weights`` names the file (relative to the repo root); its suffix is the format:

- ``.npy``: a 2-D floating-point array ``(N, D)`` whose row ``i`` is the embedding of row ``i`` of
  ``samples.parquet`` (the layout of the authors' ``awir_<model>_emb.npy``); ``N`` must equal the
  number of samples.
- ``.parquet``: columns ``sample_id`` and ``embedding`` (``fixed_size_list`` or ``list`` of
  floats, one width for all rows), in any row order: rows are matched to ``samples.parquet`` by id,
  and every sample must appear exactly once, with no id that ``samples.parquet`` lacks.

Every value must be finite once stored as float32. Bad input is an
:class:`~tgmatl.errors.InputError` naming the file (and the first bad row or sample).

:func:`write_precomputed` writes the contract of extracted embeddings
(:mod:`tgmatl.embedding.extraction`):
``sample_id``, ``embedding`` (``fixed_size_list<float32>[D]``), rows in ``samples.parquet`` order;
file metadata: backbone, family (``precomputed``), weights (as in params), weights_kind, source
(the file as a POSIX path), format (``npy`` | ``parquet``), sha256 (of the file), dim, n_samples.
Nothing about an encoder (image size, pooling, bands, precision, versions): none was run.

DVC cannot depend on a path named in params for some backbones only (``random`` or a preset
name is not a file), so stage ``sources`` writes one fingerprint per backbone
(:func:`write_sources`, the file's sha256 for a precomputed one) and ``embed@<name>`` depends on
its own: a changed file reruns that backbone's ``embed`` and what follows, nothing else. For DVC
to notice the change, the file must lie under the folder the ``sources`` stage depends on.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tgmatl.config import BackboneParams
from tgmatl.errors import InputError
from tgmatl.io import atomic_dir, write_json, write_parquet
from tgmatl.params import ParamsError
from tgmatl.survey.samples import SAMPLES_FILE, read_samples

log = logging.getLogger(__name__)

FORMATS: dict[str, str] = {".npy": "npy", ".parquet": "parquet"}
_LAYOUTS = (
    ".npy (a 2-D float array, rows in samples.parquet order) or .parquet (columns sample_id, "
    "embedding)"
)


def source_file(weights: str | Path, key: str) -> tuple[Path, str]:
    """``(path, format)`` of a precomputed backbone's file; missing or unsupported: InputError."""
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"{key}: {path}: embeddings file not found (expected {_LAYOUTS})")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{key}: {path}: unsupported suffix {path.suffix or '(none)'!r}; use {_LAYOUTS}"
        )
    return path, fmt


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_npy(path: Path, sample_ids: Sequence[str]) -> np.ndarray:
    """A ``.npy`` whose rows are the samples in ``samples.parquet`` row order -> float32 (N, D)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy array: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        shape = getattr(arr, "shape", "?")
        raise InputError(
            f"{path}: array of shape {shape}; expected a 2-D (samples, dim) array"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise InputError(f"{path}: dtype {arr.dtype}; expected floating-point embeddings")
    n, dim = arr.shape
    if n != len(sample_ids):
        raise InputError(
            f"{path}: {n} rows, but {SAMPLES_FILE} has {len(sample_ids)} samples; a .npy's rows "
            f"must be the samples in {SAMPLES_FILE} row order (use .parquet with sample_id to "
            "match by id)"
        )
    if dim < 1:
        raise InputError(f"{path}: embeddings of width 0")
    with np.errstate(over="ignore"):  # beyond float32's range becomes inf, reported below
        x = np.asarray(arr, dtype=np.float32)
    bad = _first_non_finite(x)
    if bad is not None:
        raise InputError(
            f"{path}: row {bad} (sample {sample_ids[bad]}): non-finite value (NaN or inf in "
            "float32)"
        )
    return x


def read_parquet_embeddings(path: Path, sample_ids: Sequence[str]) -> np.ndarray:
    """A Parquet file of ``sample_id`` + ``embedding``, matched by id -> float32 (N, D) in
    ``sample_ids`` order."""
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None
    missing = [c for c in ("sample_id", "embedding") if c not in table.column_names]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)}; expected sample_id and embedding"
        )
    id_col = table.column("sample_id").combine_chunks()
    if id_col.null_count:
        row = int(np.flatnonzero(id_col.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{path}: row {row}: null sample_id")
    ids = [str(v) for v in id_col.to_pylist()]
    emb = table.column("embedding").combine_chunks()
    typ = emb.type
    if not (pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ)
            or pa.types.is_large_list(typ)) or not pa.types.is_floating(typ.value_type):
        raise InputError(
            f"{path}: column embedding has type {typ}; expected a fixed_size_list or list of "
            "floats"
        )
    if emb.null_count:
        row = int(np.flatnonzero(emb.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{path}: sample {ids[row]} (row {row}): null embedding")

    dup = pd.Index(ids).duplicated()
    if dup.any():
        raise InputError(f"{path}: sample {ids[int(np.argmax(dup))]}: duplicate sample_id")
    known = set(sample_ids)
    extra = [s for s in ids if s not in known]
    if extra:
        raise InputError(
            f"{path}: sample {extra[0]}: not in {SAMPLES_FILE} ({len(extra)} such id(s)); the "
            f"file must hold exactly the samples of {SAMPLES_FILE}"
        )
    pos = pd.Index(ids).get_indexer(list(sample_ids))
    if (pos < 0).any():
        absent = [s for s, p in zip(sample_ids, pos, strict=True) if p < 0]
        raise InputError(
            f"{path}: sample {absent[0]} of {SAMPLES_FILE} has no embedding ({len(absent)} "
            "missing)"
        )

    if pa.types.is_fixed_size_list(typ):
        dim = typ.list_size
    else:
        widths = pc.list_value_length(emb).to_numpy(zero_copy_only=False)
        dim = int(widths[0]) if len(widths) else 0
        odd = np.flatnonzero(widths != dim)
        if len(odd):
            i = int(odd[0])
            raise InputError(
                f"{path}: sample {ids[i]} (row {i}): embedding of width {widths[i]}, but row 0 "
                f"(sample {ids[0]}) has {dim}; every embedding needs the same width"
            )
    if dim < 1:
        raise InputError(f"{path}: embeddings of width 0")
    # null values inside a list come out as NaN and are caught below
    values = emb.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    x = values.reshape(len(ids), dim)
    bad = _first_non_finite(x)
    if bad is not None:
        raise InputError(
            f"{path}: sample {ids[bad]} (row {bad}): non-finite value (NaN, inf or null in "
            "float32)"
        )
    return np.ascontiguousarray(x[pos])


def _first_non_finite(x: np.ndarray) -> int | None:
    bad = ~np.isfinite(x).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def read_precomputed(
    weights: str | Path, sample_ids: Sequence[str], key: str = "weights"
) -> tuple[np.ndarray, str, Path]:
    """``(embeddings float32 (N, D) in sample_ids order, format, path)`` of a precomputed file."""
    path, fmt = source_file(weights, key)
    reader = read_npy if fmt == "npy" else read_parquet_embeddings
    return reader(path, sample_ids), fmt, path


def write_precomputed(
    samples_dir: str | Path,
    out: str | Path,
    name: str,
    backbone: BackboneParams,
    row_group_size: int,
) -> dict[str, float]:
    """Stage ``embed`` for ``family: precomputed``: check the file, write ``out`` (the contract)."""
    if backbone.family != "precomputed":
        raise ValueError(f"backbones.{name}: family {backbone.family}, not precomputed")
    ids = read_samples(Path(samples_dir) / SAMPLES_FILE, ("sample_id",))["sample_id"].tolist()
    x, fmt, path = read_precomputed(backbone.weights, ids, f"backbones.{name}.weights")
    n, dim = x.shape
    meta = {
        "backbone": name,
        "family": "precomputed",
        "weights": backbone.weights,
        "weights_kind": f"precomputed embeddings ({fmt})",
        "source": path.as_posix(),
        "format": fmt,
        "sha256": sha256_file(path),
        "dim": str(dim),
        "n_samples": str(n),
    }
    table = pa.table(
        {
            "sample_id": pa.array(ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
        }
    ).replace_schema_metadata(meta)
    write_parquet(out, table, row_group_size=row_group_size, compression="zstd")
    log.info("%s: %d precomputed embeddings (dim %d) from %s -> %s", name, n, dim, path, out)
    return {"n_samples": n, "dim": dim}


# --- DVC: one fingerprint per backbone ---------------------------------------------------------
def fingerprint(name: str, backbone: BackboneParams, tracked: str | Path | None) -> dict:
    """What ``embed@<name>`` depends on besides params and code: for a precomputed backbone the
    file's format and sha256 (the file must lie under ``tracked``, the folder DVC watches, when
    given); for an encoder its family and weights as written."""
    fp = {"backbone": name, "family": backbone.family, "weights": backbone.weights}
    if backbone.family != "precomputed":
        return fp
    key = f"backbones.{name}.weights"
    path, fmt = source_file(backbone.weights, key)
    if tracked is not None:
        # abspath, not resolve: a DVC cache link inside the folder still counts as inside
        root = os.path.abspath(tracked)
        if os.path.commonpath([os.path.abspath(path), root]) != root:
            raise ParamsError(
                f"{key}: {path} is outside {Path(tracked).as_posix()}/, the folder dvc.yaml "
                "watches for precomputed embeddings; move the file there so that a change to "
                "it reruns embed"
            )
    fp.update(format=fmt, sha256=sha256_file(path))
    return fp


def write_sources(
    out_dir: str | Path, backbones: Mapping[str, BackboneParams], tracked: str | Path | None
) -> None:
    """Stage ``sources``: ``<out_dir>/<name>.json`` (:func:`fingerprint`) for every backbone."""
    prints = {name: fingerprint(name, p, tracked) for name, p in backbones.items()}
    with atomic_dir(out_dir) as tmp:
        for name, fp in prints.items():
            write_json(tmp / f"{name}.json", fp)
