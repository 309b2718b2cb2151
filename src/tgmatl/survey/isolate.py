"""Stage ``isolate``: one sample per annotated target, from the tiles of stage ``tile``.

For each target of ``targets.parquet`` (in target order), the first rule that applies:

1. ``too_small``: the box is narrower or lower than ``isolate.min_box_px`` -> dropped;
2. ``cut_by_border``: the box touches or crosses the scene border (its annotation flags it
   truncated, it was clipped to the image, or an edge lies on the border) -> dropped: the animal is
   only partly in view, its box geometry is not the animal's;
3. ``not_whole_in_tile``: no window holds the whole box -> dropped;
4. otherwise a sample:

   - ``isolate.policy: tile``: among the tiles that hold the whole box, the one whose centre is
     nearest the box centre (ties: the first tile in tile order); the sample image is that tile.
   - ``isolate.policy: recentre``: a ``tile.size`` window centred on the box, clamped into the
     scene (zero-padded only when the scene is smaller than a tile), read from the scene itself
     (hence ``--root``).

Every dropped target is counted by reason (and by class) in ``metrics/data.json``, which holds
totals and per-class counts only (a metrics file is compared key by key, so it stays short); the
samples per scene go to ``report.json`` in the samples folder.

Outputs in the samples folder: ``samples.parquet`` (columns :data:`SAMPLE_SCHEMA`, the data
contract; rows sorted by ``sample_id``), ``images/*.png`` (uint8, 3 bands RGB or 1 band for a
single-band survey), ``thermal/*.png`` (single band) when the survey has a thermal band, and
``classes.txt`` (the class list, ``class_id`` = line index) and ``report.json``: ``per_scene``
(samples of each scene that has targets) and ``dropped_per_scene`` (targets dropped, by reason).
With ``policy: tile`` samples from one tile share that tile's image file
(``images/<tile_id>.png``); with ``recentre`` each sample has its own
(``images/<sample_id>.png``).

``sample_id`` is ``s`` + the target number, zero-padded to at least 5 digits: stable whatever
targets are dropped, and sorting as text sorts by target.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from tgmatl.errors import InputError
from tgmatl.io import atomic_dir, write_json, write_parquet
from tgmatl.survey.raster import SceneReader, scene_info, write_png
from tgmatl.survey.tiling import Window, nearest_window, recentred_window

log = logging.getLogger(__name__)

SAMPLE_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("scene_id", pa.string()), ("image_path", pa.string()),
    ("thermal_path", pa.string()), ("class_name", pa.string()), ("class_id", pa.int64()),
    ("xmin", pa.float64()), ("xmax", pa.float64()), ("ymin", pa.float64()),
    ("ymax", pa.float64()), ("tile_width", pa.int64()), ("tile_height", pa.int64()),
    ("bands", pa.int64()),
])
DROP_REASONS = ("too_small", "cut_by_border", "not_whole_in_tile")
REGION_MAX_PX = 25_000_000  # recentre: read a scene region at once up to this many pixels


def read_tiles(tiles_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The ``tiles.parquet`` and ``targets.parquet`` tables of a tiles folder, and its metadata."""
    tiles_dir = Path(tiles_dir)
    paths = [tiles_dir / "tiles.parquet", tiles_dir / "targets.parquet"]
    for p in paths:
        if not p.is_file():
            raise InputError(f"{p}: missing; run stage `tile` first")
    raw = pq.read_schema(paths[0]).metadata or {}
    if b"tgmatl" not in raw:
        raise InputError(f"{paths[0]}: no tgmatl metadata; not written by stage `tile`")
    meta = json.loads(raw[b"tgmatl"])
    report = tiles_dir / "report.json"
    meta["report"] = json.loads(report.read_text()) if report.is_file() else {}
    return pd.read_parquet(paths[0]), pd.read_parquet(paths[1]), meta


def drop_reason(target: Any, min_box_px: int) -> str | None:
    """Why a target (a row of ``targets.parquet``) yields no sample before any window is tried."""
    if target.xmax - target.xmin < min_box_px or target.ymax - target.ymin < min_box_px:
        return "too_small"
    if (
        target.truncated
        or target.xmin <= 0
        or target.ymin <= 0
        or target.xmax >= target.scene_width
        or target.ymax >= target.scene_height
    ):
        return "cut_by_border"
    return None


def isolate_samples(
    tiles_dir: str | Path,
    params: Any,
    out: str | Path,
    metrics: str | Path,
    root: str | Path | None = None,
) -> dict:
    """Stage ``isolate``: write the samples folder ``out`` and ``metrics`` (JSON) atomically.

    ``params`` is a :class:`tgmatl.config.IsolateParams`; ``root`` (the data root the tiles were
    cut from) is needed by ``policy: recentre`` only. Returns the metrics dict.
    """
    tiles_dir = Path(tiles_dir)
    tiles, targets, meta = read_tiles(tiles_dir)
    classes = list(meta["classes"])
    size = int(meta["tile"]["size"])
    if params.policy == "recentre" and root is None:
        raise InputError("isolate.policy recentre reads the scenes: give the data root (--root)")
    width = max(5, len(str(max(len(targets) - 1, 0))))
    whole = tiles[tiles["whole"]]
    by_target = whole.groupby("target", sort=False).indices
    dropped: Counter = Counter()
    dropped_by_class: dict[str, Counter] = {r: Counter() for r in DROP_REASONS}
    dropped_scenes: dict[str, Counter] = defaultdict(Counter)
    chosen: list[tuple[Any, Window, Any]] = []  # (target row, window, tiles.parquet row label)
    for t in targets.itertuples(index=False):
        reason = drop_reason(t, params.min_box_px)
        win, tile_idx = None, None
        if reason is None:
            box = (t.xmin, t.xmax, t.ymin, t.ymax)
            if params.policy == "tile":
                rows = by_target.get(t.target)
                if rows is not None:
                    cand = whole.iloc[rows]
                    wins = [Window(int(r.col_off), int(r.row_off), int(r.width), int(r.height))
                            for r in cand.itertuples(index=False)]
                    k = nearest_window(box, wins)
                    win, tile_idx = wins[k], cand.index[k]
            else:
                win = recentred_window(box, int(t.scene_width), int(t.scene_height), size)
            if win is None:
                reason = "not_whole_in_tile"
        if reason is not None:
            dropped[reason] += 1
            dropped_by_class[reason][t.class_name] += 1
            dropped_scenes[t.scene_id][reason] += 1
            continue
        chosen.append((t, win, tile_idx))

    rows_out: dict[str, list] = {name: [] for name in SAMPLE_SCHEMA.names}
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        if params.policy == "tile":
            paths = _copy_tiles(tiles_dir, tiles, [c[2] for c in chosen], tmp)
        else:
            paths = _read_recentred(Path(root), chosen, width, tmp)
        for (t, win, _), (image_path, thermal_path, bands) in zip(chosen, paths, strict=True):
            sample = {
                "sample_id": f"s{t.target:0{width}d}", "scene_id": t.scene_id,
                "image_path": image_path, "thermal_path": thermal_path,
                "class_name": t.class_name, "class_id": int(t.class_id),
                "xmin": t.xmin - win.col_off, "xmax": t.xmax - win.col_off,
                "ymin": t.ymin - win.row_off, "ymax": t.ymax - win.row_off,
                "tile_width": win.width, "tile_height": win.height, "bands": bands,
            }
            for k, v in sample.items():
                rows_out[k].append(v)
        table = pa.table(rows_out, schema=SAMPLE_SCHEMA)
        table = table.sort_by("sample_id")  # already in target order; kept explicit
        md = {"classes": classes, "policy": params.policy, "min_box_px": params.min_box_px,
              "tile": meta["tile"], "root": meta["root"]}
        table = table.replace_schema_metadata({b"tgmatl": json.dumps(md, sort_keys=True).encode()})
        write_parquet(tmp / "samples.parquet", table)
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
        write_json(tmp / "report.json", _scene_report(targets, rows_out, dropped_scenes))

    result = _metrics(targets, rows_out, classes, dropped, dropped_by_class, meta)
    write_json(metrics, result)
    log.info(
        "isolate: %d samples from %d targets; dropped %s; per class %s",
        result["samples"], result["targets"], dict(dropped), result["per_class"],
    )
    return result


def _copy_tiles(
    tiles_dir: Path, tiles: pd.DataFrame, tile_rows: list, tmp: Path
) -> list[tuple[str, str | None, int]]:
    """Copy each chosen tile's PNGs once; return (image_path, thermal_path, bands) per sample."""
    out, copied = [], set()
    for i in tqdm(tile_rows, desc="isolate", unit="sample", leave=False):
        r = tiles.loc[i]
        thermal = None if pd.isna(r.thermal_path) else str(r.thermal_path)
        if r.tile_id not in copied:
            copied.add(r.tile_id)
            _copy(tiles_dir / r.image_path, tmp / r.image_path)
            if thermal is not None:
                _copy(tiles_dir / thermal, tmp / thermal)
        out.append((str(r.image_path), thermal, int(r.bands)))
    return out


def _copy(src: Path, dst: Path) -> None:
    if not src.is_file():
        raise InputError(f"{src}: tile image missing; rerun stage `tile`")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _read_recentred(
    root: Path, chosen: list, width: int, tmp: Path
) -> list[tuple[str, str | None, int]]:
    """Read each recentred window from its scene; return (image_path, thermal_path, bands)."""
    out: list[tuple[str, str | None, int]] = []
    bar = tqdm(total=len(chosen), desc="isolate", unit="sample", leave=False)
    # `chosen` is in target order, hence grouped by scene: each scene is opened once.
    for _, group in itertools.groupby(chosen, key=lambda c: c[0].scene_id):
        group = list(group)
        t0 = group[0][0]
        thermal = None if pd.isna(t0.scene_thermal_path) else root / t0.scene_thermal_path
        info = scene_info(root / t0.scene_path, thermal)
        if (info.width, info.height) != (t0.scene_width, t0.scene_height):
            raise InputError(
                f"{info.path}: {info.width}x{info.height}, but the tiles were cut from a "
                f"{t0.scene_width}x{t0.scene_height} scene: is --root the tile stage's root?"
            )
        with SceneReader(info) as reader:
            # One read of the region spanning the scene's windows when it is small enough (a JPEG
            # decodes from the top on every read); otherwise one windowed read per sample.
            c0 = min(w.col_off for _, w, _ in group)
            r0 = min(w.row_off for _, w, _ in group)
            c1 = max(w.col_off + w.width for _, w, _ in group)
            r1 = max(w.row_off + w.height for _, w, _ in group)
            region = None
            if (c1 - c0) * (r1 - r0) <= REGION_MAX_PX:
                region = reader.read(c0, r0, c1 - c0, r1 - r0)
            for t, win, _ in group:
                if region is None:
                    image, thermal_band = reader.read(
                        win.col_off, win.row_off, win.width, win.height
                    )
                else:
                    rows = slice(win.row_off - r0, win.row_off - r0 + win.height)
                    cols = slice(win.col_off - c0, win.col_off - c0 + win.width)
                    image = region[0][:, rows, cols]
                    thermal_band = None if region[1] is None else region[1][rows, cols]
                sid = f"s{t.target:0{width}d}"
                write_png(tmp / "images" / f"{sid}.png", image)
                thermal_path = None
                if thermal_band is not None:
                    thermal_path = f"thermal/{sid}.png"
                    (tmp / "thermal").mkdir(exist_ok=True)
                    write_png(tmp / thermal_path, thermal_band)
                out.append((f"images/{sid}.png", thermal_path, image.shape[0]))
                bar.update()
    bar.close()
    return out


def _metrics(
    targets: pd.DataFrame,
    samples: dict[str, list],
    classes: list[str],
    dropped: Counter,
    dropped_by_class: dict[str, Counter],
    meta: dict,
) -> dict:
    per_class = Counter(samples["class_name"])
    report = meta.get("report", {}).get("counts", {})
    read_keys = ("ignored_class", "zero_area", "outside_image", "clipped_to_image", "no_targets",
                 "label_without_image", "image_outside_class_folders", "crowd",
                 "scenes_smaller_than_tile", "targets_in_no_tile", "dropped_scenes",
                 "dropped_labels", "boxes_in_dropped_scenes")
    return {
        "targets": len(targets),
        "samples": len(samples["sample_id"]),
        "classes": len(classes),
        "per_class": {c: per_class.get(c, 0) for c in classes},
        "dropped": {r: dropped.get(r, 0) for r in DROP_REASONS},
        "dropped_by_class": {
            r: {c: dropped_by_class[r].get(c, 0) for c in classes} for r in DROP_REASONS
        },
        # Boxes lost before isolation (stage `tile`'s counted warnings), so nothing goes unseen.
        "input": {k: int(report.get(k, 0)) for k in read_keys},
    }


def _scene_report(targets: pd.DataFrame, samples: dict[str, list],
                  dropped_scenes: dict[str, Counter]) -> dict:
    """Per-scene counts (kept out of metrics/data.json: one key per scene swamps a metrics diff)."""
    per_scene = Counter(samples["scene_id"])
    scenes = sorted(targets["scene_id"].unique())
    return {
        "per_scene": {s: per_scene.get(s, 0) for s in scenes},
        "dropped_per_scene": {s: dict(sorted(dropped_scenes[s].items()))
                              for s in scenes if dropped_scenes.get(s)},
    }
