"""The ``samples.parquet`` contract (written by ``isolate``), read and checked in one place.

Columns: ``sample_id``, ``scene_id``, ``image_path`` (relative to the samples folder),
``thermal_path`` (or null), ``class_name``, ``class_id``, ``xmin, xmax, ymin, ymax`` (tile
pixels), ``tile_width``, ``tile_height``, ``bands``. Every reader takes the columns it needs
through :func:`read_samples`, so bad input gets the same errors naming the file and the sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tgmatl.errors import InputError

SAMPLES_FILE = "samples.parquet"
BOX_COLUMNS: tuple[str, ...] = ("xmin", "xmax", "ymin", "ymax")
SAMPLE_COLUMNS: tuple[str, ...] = ("sample_id", "class_id", "class_name", *BOX_COLUMNS)


def read_samples(path: str | Path, columns: Sequence[str] = SAMPLE_COLUMNS) -> pd.DataFrame:
    """Read ``samples.parquet`` (only ``columns``) and check ids, class ids and boxes.

    Errors name the file and the sample: missing columns, duplicate or null ids, negative class
    ids, non-finite or empty boxes (``xmax <= xmin`` or ``ymax <= ymin``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: samples table not found")
    df = pd.read_parquet(path)  # all columns: a missing one is named below
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    df = df[list(columns)].reset_index(drop=True)
    if df.empty:
        raise InputError(f"{path}: no samples")
    if df["sample_id"].isna().any():
        raise InputError(f"{path}: row {int(df['sample_id'].isna().idxmax())}: null sample_id")
    dup = df["sample_id"].duplicated()
    if dup.any():
        raise InputError(f"{path}: sample {df['sample_id'][dup].iloc[0]}: duplicate sample_id")
    df["sample_id"] = df["sample_id"].astype(str)
    if "class_id" in df:
        bad = df["class_id"].isna() | (df["class_id"] < 0)
        if bad.any():
            raise InputError(f"{path}: sample {df['sample_id'][bad].iloc[0]}: bad class_id")
        df["class_id"] = df["class_id"].astype(np.int64)
    if set(BOX_COLUMNS) <= set(df.columns):
        box = df[list(BOX_COLUMNS)].to_numpy(np.float64)
        w, h = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
        bad = ~np.isfinite(box).all(axis=1) | ~(w > 0) | ~(h > 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{path}: sample {df['sample_id'][i]}: empty or non-finite box "
                f"(xmin={box[i, 0]}, xmax={box[i, 1]}, ymin={box[i, 2]}, ymax={box[i, 3]})"
            )
    return df
