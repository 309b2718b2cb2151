"""Grid windows over a scene, the edge policy, box clipping and visibility (pure functions).

Boxes are ``(xmin, xmax, ymin, ymax)`` in pixel-edge coordinates (a box covering pixel columns
0..9 has ``xmin = 0, xmax = 10``). Windows are ``(col_off, row_off, width, height)``.

Windows per axis of length ``L`` for ``tile.size`` ``s`` and ``tile.stride`` ``t``:

- ``pad``:   ``ceil((L - s) / t) + 1`` windows at ``0, t, 2t, ...``; the last one may reach past the
  border and is zero-padded there.
- ``shift``: the same count; the last window is shifted back to end exactly at the border.
- ``drop``:  ``floor((L - s) / t) + 1`` windows at ``0, t, ...``, only those wholly inside.

A scene shorter than ``s`` along an axis gets one window at 0, zero-padded, with ``pad`` *and*
``shift`` (there is no room to shift into), and none with ``drop`` (the scene yields no tiles;
the tile stage counts it).

A box is *present* in a window when at least ``min_visible`` of its area lies inside; it is then
clipped to the window and expressed in tile pixels.

Stage ``tile`` (:func:`tile_survey`) writes into the tiles folder:

- ``images/<tile_id>.png`` (uint8; 3 bands RGB, or 1 band for a single-band survey) and
  ``thermal/<tile_id>.png`` (single band, uint8 or uint16) when the scene has a thermal band.
  Only tiles holding at least one present box are written; the others are counted
  (``empty_windows``).
- ``tiles.parquet``, one row per tile x present box:

  ======================  ============================================================
  tile_id                 str, ``t000000``...: scenes by id, windows row-major
  scene_id                str, image path relative to the data root, no extension
  image_path              str, tile PNG relative to the tiles folder
  thermal_path            str or null, thermal PNG relative to the tiles folder
  bands                   int32, band count of ``image_path``
  col_off, row_off        int32, window offset in scene pixels
  width, height           int32, window size (= ``tile.size``; zero-padded past the scene)
  scene_width/_height     int32, scene size
  transform               list<float64> (a, b, c, d, e, f) of the tile = scene transform *
                          translation(col_off, row_off); null when not georeferenced
  crs                     str or null, EPSG code or WKT
  target                  int64, the box's row in ``targets.parquet``
  class_name, class_id    str, int32 (index in the class list, ignored classes removed)
  xmin, xmax, ymin, ymax  float64, the box clipped to the tile, tile pixels
  visible                 float64, fraction of the full box's area inside the tile
  whole                   bool, the full box lies inside the tile
  ======================  ============================================================

- ``targets.parquet``, one row per annotated target kept by the reader (``target`` = row):
  target, scene_id, class_name, class_id, xmin, xmax, ymin, ymax (full box, scene px),
  truncated (flagged by the annotation or clipped to the image), scene_width, scene_height,
  scene_path and scene_thermal_path (relative to the data root), source and item (annotation
  file relative to the root, and line/object), n_tiles (tiles where the box is present).
- file metadata ``tgmatl`` (JSON) on both: root (as given), format, classes, tile params.
- ``report.json``: the same metadata, counters (scenes, boxes, ignored_class and
  ignored_by_class, zero_area, outside_image, clipped_to_image, no_targets, label_without_image,
  crowd, scenes_smaller_than_tile, empty_windows, tiles, targets_in_no_tile, and dropped_scenes,
  dropped_labels, boxes_in_dropped_scenes: 0 unless ``data.on_error: skip``), the message of
  every counted warning (each names its file and line/object), ``dropped``: one
  ``{kind: scene|label, file, reason}`` per dropped scene or label, and ``per_scene``: the boxes
  of each kept scene.

With ``data.on_error: skip`` a scene whose pixels fail to decode while it is tiled (a truncated
JPEG is only found there) is dropped whole: its tiles are removed and its boxes leave
``targets.parquet`` (``target`` numbers the kept boxes).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from tgmatl.errors import InputError
from tgmatl.io import atomic_dir, write_json, write_parquet
from tgmatl.survey.annotations import OnError, Survey, read_survey
from tgmatl.survey.raster import SceneReader, write_png

log = logging.getLogger(__name__)

Edge = Literal["pad", "shift", "drop"]
# Visibility is a ratio of areas; a float tolerance keeps 0.5 == 5/10 present at min_visible 0.5.
_EPS = 1e-9


@dataclass(frozen=True)
class Window:
    col_off: int
    row_off: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[float, float]:
        return self.col_off + self.width / 2, self.row_off + self.height / 2


def axis_offsets(length: int, size: int, stride: int, edge: Edge) -> list[int]:
    """Window offsets along one axis (see the module docstring for the counts)."""
    if length < 1 or size < 1 or stride < 1:
        raise ValueError(f"length, size and stride must be >= 1, got {length}, {size}, {stride}")
    if length < size:
        return [] if edge == "drop" else [0]
    if edge == "drop":
        return [i * stride for i in range((length - size) // stride + 1)]
    n = math.ceil((length - size) / stride) + 1
    offsets = [i * stride for i in range(n)]
    if edge == "shift":
        offsets[-1] = length - size
    elif edge != "pad":
        raise ValueError(f"unknown edge policy {edge!r}")
    return offsets


def grid_windows(width: int, height: int, size: int, stride: int, edge: Edge) -> list[Window]:
    """All windows of a ``width`` x ``height`` scene, row-major (top row first, left to right)."""
    cols = axis_offsets(width, size, stride, edge)
    rows = axis_offsets(height, size, stride, edge)
    return [Window(c, r, size, size) for r in rows for c in cols]


def clip_boxes(boxes: np.ndarray, window: Window) -> tuple[np.ndarray, np.ndarray]:
    """Clip boxes ``[N, 4]`` (xmin, xmax, ymin, ymax; scene px) to ``window``.

    Returns the clipped boxes in tile pixels (degenerate where a box misses the window) and the
    visible fraction of each box's area (0 where it misses). Boxes must have positive area.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0 = np.clip(boxes[:, 0], window.col_off, window.col_off + window.width)
    x1 = np.clip(boxes[:, 1], window.col_off, window.col_off + window.width)
    y0 = np.clip(boxes[:, 2], window.row_off, window.row_off + window.height)
    y1 = np.clip(boxes[:, 3], window.row_off, window.row_off + window.height)
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    visible = (x1 - x0) * (y1 - y0) / area
    clipped = np.stack(
        [x0 - window.col_off, x1 - window.col_off, y0 - window.row_off, y1 - window.row_off], axis=1
    )
    return clipped, visible


def present(visible: np.ndarray, min_visible: float) -> np.ndarray:
    """Which boxes count as present, given their visible fractions."""
    return np.asarray(visible) >= min_visible - _EPS


def whole_inside(boxes: np.ndarray, window: Window) -> np.ndarray:
    """Which boxes lie wholly inside ``window`` (exact comparisons, no area ratio)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (
        (b[:, 0] >= window.col_off)
        & (b[:, 1] <= window.col_off + window.width)
        & (b[:, 2] >= window.row_off)
        & (b[:, 3] <= window.row_off + window.height)
    )


def nearest_window(box: tuple[float, float, float, float], windows: list[Window]) -> int:
    """Index of the window whose centre is nearest the box centre (ties: the first)."""
    if not windows:
        raise ValueError("no windows to choose from")
    cx, cy = (box[0] + box[1]) / 2, (box[2] + box[3]) / 2
    d2 = [(w.centre[0] - cx) ** 2 + (w.centre[1] - cy) ** 2 for w in windows]
    return int(np.argmin(d2))


def _recentre_axis(lo: float, hi: float, length: int, size: int) -> int | None:
    # Offsets keeping [lo, hi] inside [off, off + size] and the window inside the scene
    # (a scene shorter than `size` has one window at 0, padded).
    first = max(0, math.ceil(hi) - size)
    last = min(max(length - size, 0), math.floor(lo))
    if first > last:
        return None
    centred = math.floor((lo + hi) / 2 - size / 2 + 0.5)  # round half up, no banker's rounding
    return min(max(centred, first), last)


def recentred_window(
    box: tuple[float, float, float, float], width: int, height: int, size: int
) -> Window | None:
    """A ``size`` window centred on the box, clamped into the scene; None if the box cannot fit."""
    col = _recentre_axis(box[0], box[1], width, size)
    row = _recentre_axis(box[2], box[3], height, size)
    if col is None or row is None:
        return None
    return Window(col, row, size, size)



# --- the `tile` stage: everything below reads and writes files ----------------------------------
TILE_SCHEMA = pa.schema([
    ("tile_id", pa.string()), ("scene_id", pa.string()), ("image_path", pa.string()),
    ("thermal_path", pa.string()), ("bands", pa.int32()), ("col_off", pa.int32()),
    ("row_off", pa.int32()), ("width", pa.int32()), ("height", pa.int32()),
    ("scene_width", pa.int32()), ("scene_height", pa.int32()),
    ("transform", pa.list_(pa.float64())), ("crs", pa.string()), ("target", pa.int64()),
    ("class_name", pa.string()), ("class_id", pa.int32()), ("xmin", pa.float64()),
    ("xmax", pa.float64()), ("ymin", pa.float64()), ("ymax", pa.float64()),
    ("visible", pa.float64()), ("whole", pa.bool_()),
])
TARGET_SCHEMA = pa.schema([
    ("target", pa.int64()), ("scene_id", pa.string()), ("class_name", pa.string()),
    ("class_id", pa.int32()), ("xmin", pa.float64()), ("xmax", pa.float64()),
    ("ymin", pa.float64()), ("ymax", pa.float64()), ("truncated", pa.bool_()),
    ("scene_width", pa.int32()), ("scene_height", pa.int32()), ("scene_path", pa.string()),
    ("scene_thermal_path", pa.string()), ("source", pa.string()), ("item", pa.string()),
    ("n_tiles", pa.int64()),
])


def tile_survey(
    root: str | Path,
    fmt: str,
    ignore_classes: Iterable[str],
    tile: Any,
    out: str | Path,
    on_error: OnError = "stop",
) -> dict:
    """Stage ``tile``: read the survey at ``root``, cut it into tiles, write ``out`` atomically.

    ``tile`` is a :class:`tgmatl.config.TileParams`; ``on_error`` is ``data.on_error`` (``skip``
    drops bad scenes and labels, counted and listed). Returns the report (also ``report.json``).
    """
    survey = read_survey(root, fmt, ignore_classes, on_error)
    meta = {
        "root": str(root), "format": fmt, "classes": list(survey.classes),
        "tile": {"size": tile.size, "stride": tile.stride, "edge": tile.edge,
                 "min_visible": tile.min_visible},
    }
    class_ids = {c: i for i, c in enumerate(survey.classes)}
    boxes = survey.boxes
    coords = boxes[["xmin", "xmax", "ymin", "ymax"]].to_numpy(np.float64)
    names = boxes["class_name"].to_numpy()
    n_tiles = np.zeros(len(boxes), dtype=np.int64)
    counts = {"dropped_scenes": 0, "dropped_labels": 0, "boxes_in_dropped_scenes": 0,
              **survey.counts, "scenes_smaller_than_tile": 0, "empty_windows": 0, "tiles": 0}
    warnings = list(survey.warnings)
    rows: dict[str, list] = {name: [] for name in TILE_SCHEMA.names}
    by_scene = boxes.groupby("scene_id", sort=False).indices
    dropped = list(survey.dropped)
    failed: set[str] = set()  # scenes dropped while their pixels were read
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        if survey.scenes["has_thermal"].any():
            (tmp / "thermal").mkdir()
        scenes = survey.scenes["scene_id"]
        for scene_id in tqdm(scenes, desc="tile", unit="scene", leave=False):
            info = survey.infos[scene_id]
            windows = grid_windows(info.width, info.height, tile.size, tile.stride, tile.edge)
            if not windows:
                counts["scenes_smaller_than_tile"] += 1
                warnings.append(f"{info.path}: {info.width}x{info.height} is smaller than "
                                f"tile.size {tile.size} with tile.edge drop: no tiles")
                continue
            idx = by_scene.get(scene_id)
            if idx is None:
                counts["empty_windows"] += len(windows)
                continue
            # A scene's tiles are kept only once all of them are read (on_error skip drops a
            # scene whose pixels fail half-way).
            scene_rows: list[dict] = []
            written: list[Path] = []
            try:
                empty = _tile_scene(info, scene_id, windows, idx, coords, names, class_ids,
                                    tile, counts["tiles"], tmp, scene_rows, written)
            except InputError as exc:
                if on_error != "skip":
                    raise
                for path in written:
                    path.unlink()
                failed.add(scene_id)
                counts["dropped_scenes"] += 1
                dropped.append({"kind": "scene", "reason": str(exc),
                                "file": Path(os.path.relpath(info.path, survey.root)).as_posix()})
                warnings.append(f"{exc} (scene dropped: data.on_error skip)")
                continue
            counts["empty_windows"] += empty
            counts["tiles"] += len({r["tile_id"] for r in scene_rows})
            for row in scene_rows:
                n_tiles[row["target"]] += 1
                for k, v in row.items():
                    rows[k].append(v)
        if failed:
            boxes, n_tiles, rows["target"] = _without_scenes(boxes, n_tiles, rows["target"],
                                                             failed, counts)
            survey.scenes = survey.scenes[~survey.scenes["scene_id"].isin(failed)]
            survey.boxes = boxes
            if boxes.empty:
                raise InputError(f"{root}: no target left: every scene with boxes was dropped "
                                 "(data.on_error skip); see the warnings above")
        missing = np.flatnonzero(n_tiles == 0)
        counts["targets_in_no_tile"] = len(missing)
        for t in missing:
            warnings.append(
                f"{survey.root / boxes.at[t, 'source']}: {boxes.at[t, 'item']}: target present "
                f"in no tile (tile.min_visible {tile.min_visible}, tile.edge {tile.edge})"
            )
        md = {b"tgmatl": json.dumps(meta, sort_keys=True).encode()}
        write_parquet(
            tmp / "tiles.parquet",
            pa.table(rows, schema=TILE_SCHEMA).replace_schema_metadata(md),
        )
        write_parquet(
            tmp / "targets.parquet",
            _targets_table(survey, class_ids, n_tiles).replace_schema_metadata(md),
        )
        per_scene = boxes["scene_id"].value_counts()
        report = {**meta, "counts": counts, "ignored_by_class": dict(survey.ignored),
                  "warnings": warnings, "dropped": dropped,
                  "per_scene": {s: int(per_scene.get(s, 0)) for s in survey.scenes["scene_id"]}}
        write_json(tmp / "report.json", report)
    for msg in warnings[len(survey.warnings):][:20]:
        log.warning(msg)
    log.info("tile: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if on_error == "skip":
        n_scenes = sum(d["kind"] == "scene" for d in dropped)
        (log.warning if dropped else log.info)(
            "tile: data.on_error skip: dropped %d scene(s) and %d label(s)%s",
            n_scenes, len(dropped) - n_scenes,
            f"; each with its reason in {Path(out) / 'report.json'}" if dropped else "")
    return report


def _tile_scene(info: Any, scene_id: str, windows: list[Window], idx: np.ndarray,
                coords: np.ndarray, names: np.ndarray, class_ids: dict[str, int], tile: Any,
                first_tile: int, tmp: Path, out_rows: list[dict], written: list[Path]) -> int:
    """Write one scene's tiles (ids from ``first_tile``); append one row per tile x present box
    to ``out_rows`` and each file written to ``written``. Returns the empty windows' count."""
    n, empty = first_tile, 0
    with SceneReader(info) as reader:
        for row_off, row_windows in _by_row(windows):
            hits = []
            for win in row_windows:
                clipped, vis = clip_boxes(coords[idx], win)
                keep = present(vis, tile.min_visible)
                if keep.any():
                    hits.append((win, clipped, vis, keep))
            empty += len(row_windows) - len(hits)
            if not hits:
                continue
            # One strip read per row of windows (JPEG decodes top to bottom anyway).
            c0 = hits[0][0].col_off
            c1 = hits[-1][0].col_off + tile.size
            strip, tstrip = reader.read(c0, row_off, c1 - c0, tile.size)
            for win, clipped, vis, keep in hits:
                tile_id = f"t{n:06d}"
                n += 1
                cols = slice(win.col_off - c0, win.col_off - c0 + tile.size)
                written.append(tmp / "images" / f"{tile_id}.png")
                write_png(written[-1], strip[:, :, cols])
                thermal_path = None
                if tstrip is not None:
                    thermal_path = f"thermal/{tile_id}.png"
                    written.append(tmp / thermal_path)
                    write_png(written[-1], tstrip[:, cols])
                whole = whole_inside(coords[idx], win)
                transform = info.window_transform(win.col_off, win.row_off)
                tile_row = {
                    "tile_id": tile_id, "scene_id": scene_id,
                    "image_path": f"images/{tile_id}.png", "thermal_path": thermal_path,
                    "bands": info.image_bands, "col_off": win.col_off,
                    "row_off": win.row_off, "width": win.width, "height": win.height,
                    "scene_width": info.width, "scene_height": info.height,
                    "transform": list(transform) if transform else None, "crs": info.crs,
                }
                for j in np.flatnonzero(keep):
                    t = int(idx[j])
                    out_rows.append(tile_row | {
                        "target": t, "class_name": names[t],
                        "class_id": class_ids[names[t]],
                        "xmin": clipped[j, 0], "xmax": clipped[j, 1],
                        "ymin": clipped[j, 2], "ymax": clipped[j, 3],
                        "visible": float(vis[j]), "whole": bool(whole[j]),
                    })
    return empty


def _without_scenes(boxes: Any, n_tiles: np.ndarray, targets: list[int], failed: set[str],
                    counts: dict) -> tuple[Any, np.ndarray, list[int]]:
    """Drop the boxes of ``failed`` scenes; renumber the kept targets (rows of the box table)."""
    keep = ~boxes["scene_id"].isin(failed).to_numpy()
    new_id = np.cumsum(keep) - 1
    counts["boxes_in_dropped_scenes"] += int((~keep).sum())
    counts["boxes"] -= int((~keep).sum())
    counts["scenes"] -= len(failed)
    return (boxes[keep].reset_index(drop=True), n_tiles[keep],
            [int(new_id[t]) for t in targets])


def _by_row(windows: list[Window]) -> Iterator[tuple[int, list[Window]]]:
    """Group row-major windows by row offset, each group left to right."""
    rows: dict[int, list[Window]] = {}
    for w in windows:
        rows.setdefault(w.row_off, []).append(w)
    yield from rows.items()


def _targets_table(survey: Survey, class_ids: dict[str, int], n_tiles: np.ndarray) -> pa.Table:
    b = survey.boxes
    scenes = survey.scenes.set_index("scene_id")
    sc = scenes.loc[b["scene_id"]]
    cols = {
        "target": np.arange(len(b), dtype=np.int64),
        "scene_id": b["scene_id"].tolist(),
        "class_name": b["class_name"].tolist(),
        "class_id": [class_ids[c] for c in b["class_name"]],
        **{k: b[k].to_numpy(np.float64) for k in ("xmin", "xmax", "ymin", "ymax")},
        "truncated": b["truncated"].to_numpy(bool),
        "scene_width": sc["width"].to_numpy(),
        "scene_height": sc["height"].to_numpy(),
        "scene_path": sc["image_path"].tolist(),
        "scene_thermal_path": sc["thermal_path"].tolist(),
        "source": b["source"].tolist(),
        "item": b["item"].tolist(),
        "n_tiles": n_tiles,
    }
    return pa.table(cols, schema=TARGET_SCHEMA)
