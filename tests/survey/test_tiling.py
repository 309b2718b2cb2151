"""Grid windows, edge policies, clipping and visibility (hand-computed), and the `tile` stage."""

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fixtures_data import Scene, write_awir, write_raster, write_voc
from rasterio.transform import Affine

from tgmatl.errors import InputError
from tgmatl.survey.raster import read_png
from tgmatl.survey.tiling import (
    Window,
    axis_offsets,
    clip_boxes,
    grid_windows,
    nearest_window,
    present,
    recentred_window,
    tile_survey,
    whole_inside,
)


def tile_params(size=300, stride=300, edge="shift", min_visible=0.5):
    return SimpleNamespace(size=size, stride=stride, edge=edge, min_visible=min_visible)


# --- windows ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "length, size, stride, edge, expected",
    [
        # ceil((1000 - 300) / 300) + 1 = 4 windows with pad and shift; floor(...) + 1 = 3 with drop
        (1000, 300, 300, "pad", [0, 300, 600, 900]),
        (1000, 300, 300, "shift", [0, 300, 600, 700]),
        (1000, 300, 300, "drop", [0, 300, 600]),
        # an exact fit: the three policies agree
        (900, 300, 300, "pad", [0, 300, 600]),
        (900, 300, 300, "shift", [0, 300, 600]),
        (900, 300, 300, "drop", [0, 300, 600]),
        # overlapping windows: ceil(340 / 200) + 1 = 3; floor(340 / 200) + 1 = 2
        (640, 300, 200, "pad", [0, 200, 400]),
        (640, 300, 200, "shift", [0, 200, 340]),
        (640, 300, 200, "drop", [0, 200]),
        # stride larger than the window: gaps between windows
        (1000, 300, 400, "pad", [0, 400, 800]),
        (1000, 300, 400, "shift", [0, 400, 700]),
        (1000, 300, 400, "drop", [0, 400]),
        # scene as long as a window, and shorter: one padded window (none with drop)
        (300, 300, 100, "shift", [0]),
        (200, 300, 300, "pad", [0]),
        (200, 300, 300, "shift", [0]),
        (200, 300, 300, "drop", []),
    ],
)
def test_axis_offsets_hand_cases(length, size, stride, edge, expected):
    assert axis_offsets(length, size, stride, edge) == expected


@pytest.mark.parametrize("edge", ["pad", "shift", "drop"])
def test_window_count_formula_and_placement(edge):
    for length in range(50, 700, 37):
        for size in (64, 100, 300):
            for stride in (30, 64, 100, 300, 350):
                offs = axis_offsets(length, size, stride, edge)
                if length < size:
                    assert offs == ([] if edge == "drop" else [0])
                    continue
                if edge == "drop":
                    assert len(offs) == (length - size) // stride + 1
                else:
                    assert len(offs) == math.ceil((length - size) / stride) + 1
                assert offs == sorted(set(offs)), "strictly increasing"
                assert offs[0] == 0
                if edge == "pad":
                    assert all(o == i * stride for i, o in enumerate(offs))
                    assert offs[-1] + size >= length  # covers the scene, padded past it
                elif edge == "shift":
                    assert offs[-1] + size == length  # ends exactly at the border
                    assert all(o + size <= length for o in offs)
                else:
                    assert all(o + size <= length for o in offs)
                    assert offs[-1] + stride + size > length  # no further full window fits


def test_grid_windows_row_major():
    wins = grid_windows(640, 512, 300, 300, "shift")
    assert [(w.col_off, w.row_off) for w in wins] == [
        (0, 0), (300, 0), (340, 0), (0, 212), (300, 212), (340, 212)
    ]
    assert all((w.width, w.height) == (300, 300) for w in wins)
    assert grid_windows(200, 512, 300, 300, "drop") == []


# --- clipping and visibility --------------------------------------------------------------------
def test_clip_boxes_hand_cases():
    win = Window(300, 100, 300, 300)
    boxes = np.array([
        [350, 400, 150, 200],  # wholly inside
        [290, 310, 150, 160],  # half inside (x 300..310 of 290..310)
        [280, 310, 150, 160],  # a third inside
        [0, 50, 0, 50],        # outside
        [590, 610, 390, 410],  # a quarter inside (corner)
    ], dtype=float)
    clipped, vis = clip_boxes(boxes, win)
    np.testing.assert_allclose(vis, [1.0, 0.5, 1 / 3, 0.0, 0.25])
    np.testing.assert_allclose(clipped[0], [50, 100, 50, 100])
    np.testing.assert_allclose(clipped[1], [0, 10, 50, 60])
    np.testing.assert_allclose(clipped[4], [290, 300, 290, 300])
    assert present(vis, 0.5).tolist() == [True, True, False, False, False]
    assert present(vis, 0.25).tolist() == [True, True, True, False, True]
    assert present(vis, 1.0).tolist() == [True, False, False, False, False]
    assert whole_inside(boxes, win).tolist() == [True, False, False, False, False]


def test_whole_inside_includes_the_window_edges():
    win = Window(0, 0, 300, 300)
    boxes = np.array([[0, 300, 0, 300], [0, 300.5, 0, 10]])
    assert whole_inside(boxes, win).tolist() == [True, False]


def test_nearest_window_picks_nearest_centre_and_first_on_ties():
    wins = [Window(0, 0, 300, 300), Window(200, 0, 300, 300), Window(400, 0, 300, 300)]
    # box centre x = 330: centres 150, 350, 550 -> the second window
    assert nearest_window((320, 340, 100, 120), wins) == 1
    # box centre x = 250: 100 from 150 and 350 -> a tie, the first wins
    assert nearest_window((240, 260, 100, 120), wins) == 0


def test_recentred_window_centres_and_clamps():
    # centred: box centre (500, 400) -> offsets (350, 250)
    assert recentred_window((490, 510, 390, 410), 1000, 800, 300) == Window(350, 250, 300, 300)
    # near the left/top border: clamped to 0
    assert recentred_window((10, 30, 5, 25), 1000, 800, 300) == Window(0, 0, 300, 300)
    # near the right/bottom border: clamped to the last full window
    assert recentred_window((980, 995, 790, 799), 1000, 800, 300) == Window(700, 500, 300, 300)
    # half-pixel centre rounds up: centre x 150.5 -> 0.5 -> 1
    assert recentred_window((100, 201, 100, 200), 1000, 800, 300).col_off == 1
    # scene smaller than a tile: one window at 0, padded
    assert recentred_window((10, 50, 10, 50), 200, 150, 300) == Window(0, 0, 300, 300)
    # a box larger than the window fits no window
    assert recentred_window((100, 450, 100, 150), 1000, 800, 300) is None
    # a box exactly the window size with a fractional offset needs a whole-pixel shift
    w = recentred_window((100.4, 400.4, 10, 20), 1000, 800, 300)
    assert w is None or (w.col_off <= 100.4 and w.col_off + 300 >= 400.4)


# --- the tile stage -----------------------------------------------------------------------------
CLASSES = ["cow", "deer", "horse"]


def small_survey(root, thermal_file=False, geotiff=False, bands=3):
    transform = Affine(0.05, 0, 500000.0, 0, -0.05, 4600000.0) if geotiff else None
    scenes = [
        Scene("cow/a", 700, 400, [("cow", 100, 150, 100, 140), ("deer", 280, 320, 50, 80),
                                  ("horse", 640, 690, 350, 395)],
              suffix=".tif" if geotiff else ".png", bands=bands, thermal_file=thermal_file,
              transform=transform, crs="EPSG:32633" if geotiff else None),
        Scene("deer/b", 250, 200, [("deer", 10, 40, 10, 40)], bands=bands,
              thermal_file=thermal_file, offset=7),
    ]
    return write_awir(root, CLASSES, scenes), scenes


def test_tile_stage_writes_tiles_rows_and_report(tmp_path):
    root, scenes = small_survey(tmp_path / "survey", thermal_file=True)
    out = tmp_path / "tiles"
    report = tile_survey(root, "awir", [], tile_params(300, 200, "shift", 0.5), out)
    tiles = pd.read_parquet(out / "tiles.parquet")
    # scene a 700x400: x offsets [0, 200, 400], y [0, 100] -> 6 windows; scene b 250x200: one
    # padded window. cow (100..150, 100..140) is whole in (0, 0) and (0, 100); deer (280..320,
    # 50..80) has 20 of 40 px inside window x 0..300 (visible 0.5: present) and is whole in
    # x 200..500; horse (640..690, 350..395) only fits (400, 100).
    got = tiles.groupby("target")[["col_off", "row_off"]].apply(
        lambda d: sorted(zip(d.col_off, d.row_off, strict=True))
    ).to_dict()
    assert got == {
        0: [(0, 0), (0, 100)],
        1: [(0, 0), (200, 0)],
        2: [(400, 100)],
        3: [(0, 0)],
    }
    deer = tiles[tiles.target == 1].set_index("col_off")
    assert deer.loc[0, "visible"] == pytest.approx(0.5) and not deer.loc[0, "whole"]
    assert deer.loc[200, "visible"] == 1.0 and deer.loc[200, "whole"]
    # (YOLO stores normalised coordinates: a rounding error of ~1e-7 px comes back)
    assert deer.loc[0, ["xmin", "xmax"]].tolist() == pytest.approx([280, 300])
    assert deer.loc[200, ["xmin", "xmax", "ymin", "ymax"]].tolist() == pytest.approx(
        [80, 120, 50, 80]
    )
    # 7 windows, 5 written (those with a present box); empty ones counted
    assert report["counts"]["tiles"] == tiles.tile_id.nunique() == 5
    assert report["counts"]["empty_windows"] == 2
    assert json.loads((out / "report.json").read_text())["counts"] == report["counts"]
    # tile pixels are the scene window (PNG: lossless); the padded tile is zero past the scene
    row = tiles[(tiles.target == 2)].iloc[0]
    np.testing.assert_array_equal(
        read_png(out / row.image_path), scenes[0].pixels()[:, 100:400, 400:700]
    )
    np.testing.assert_array_equal(
        read_png(out / row.thermal_path)[0], scenes[0].thermal()[100:400, 400:700]
    )
    small = read_png(out / tiles[tiles.target == 3].iloc[0].image_path)
    assert small.shape == (3, 300, 300)
    np.testing.assert_array_equal(small[:, :200, :250], scenes[1].pixels())
    assert not small[:, 200:, :].any() and not small[:, :, 250:].any()
    targets = pd.read_parquet(out / "targets.parquet")
    assert targets.n_tiles.tolist() == [2, 2, 1, 1]
    assert targets.scene_thermal_path.tolist() == ["cow/a_thermal.png"] * 3 + ["deer/b_thermal.png"]
    meta = json.loads(pq.read_schema(out / "tiles.parquet").metadata[b"tgmatl"])
    assert meta["classes"] == CLASSES and meta["tile"]["size"] == 300


def test_geotiff_tiles_keep_transform_and_crs(tmp_path):
    root, scenes = small_survey(tmp_path / "survey", geotiff=True)
    out = tmp_path / "tiles"
    tile_survey(root, "awir", [], tile_params(300, 200, "shift"), out)
    tiles = pd.read_parquet(out / "tiles.parquet").drop_duplicates("tile_id")
    geo = tiles[tiles.scene_id == "cow/a"]
    assert len(geo) == 4
    scene_t = scenes[0].transform
    for r in geo.itertuples():
        expected = scene_t @ Affine.translation(r.col_off, r.row_off)
        np.testing.assert_allclose(r.transform, tuple(expected)[:6])
        assert r.crs == "EPSG:32633"
    # x of the tile's top-left corner: 500000 + 0.05 * col_off
    r = geo[geo.col_off == 400].iloc[0]
    assert r["transform"][2] == pytest.approx(500000.0 + 0.05 * 400)
    assert r["transform"][5] == pytest.approx(4600000.0 - 0.05 * r["row_off"])
    plain = tiles[tiles.scene_id == "deer/b"].iloc[0]
    assert plain["transform"] is None and pd.isna(plain["crs"])


def test_edge_policies_through_the_stage(tmp_path):
    root, _ = small_survey(tmp_path / "survey")
    counts = {}
    for edge in ("pad", "shift", "drop"):
        rep = tile_survey(root, "awir", [], tile_params(300, 300, edge, 0.5), tmp_path / edge)
        tiles = pd.read_parquet(tmp_path / edge / "tiles.parquet")
        c = rep["counts"]
        counts[edge] = (
            c["tiles"] + c["empty_windows"], c["targets_in_no_tile"], c["scenes_smaller_than_tile"]
        )
        cols = sorted(tiles[tiles.scene_id == "cow/a"].col_off.unique())
        horse = tiles[tiles.class_name == "horse"]
        if edge == "pad":
            # 700 wide: windows at 0, 300, 600 (the last one padded past 700)
            assert cols == [0, 300, 600]
            assert horse[["col_off", "row_off"]].values.tolist() == [[600, 300]]
        if edge == "shift":
            # the last window shifted back to end at 700 (and at 400 in y)
            assert cols == [0, 300, 400]
            assert horse[["col_off", "row_off"]].values.tolist() == [[400, 100]]
    # windows: pad 3x2 + 1, shift 3x2 + 1, drop 2x1 + 0 (scene b is smaller than a tile)
    assert counts["pad"][0] == 7 and counts["shift"][0] == 7 and counts["drop"][0] == 2
    # with drop, the horse (x 640..690, y 350..395) and scene b's deer are in no tile
    assert counts["drop"][1:] == (2, 1)
    rep = json.loads((tmp_path / "drop" / "report.json").read_text())
    assert any("deer/b.png" in w and "smaller than tile.size" in w for w in rep["warnings"])
    assert any("cow/a.txt: line 3: target present in no tile" in w for w in rep["warnings"])


def test_single_band_voc_survey_tiles_are_one_band(tmp_path):
    scenes = [Scene("f1", 640, 512, [("Person", 10, 20, 10, 30), ("DontCare", 0, 50, 0, 50)],
                    suffix=".jpg", bands=1)]
    root = write_voc(tmp_path / "voc", scenes)
    out = tmp_path / "tiles"
    rep = tile_survey(root, "voc", ["DontCare"], tile_params(), out)
    tiles = pd.read_parquet(out / "tiles.parquet")
    assert tiles.bands.tolist() == [1] and tiles.thermal_path.isna().all()
    assert read_png(out / tiles.image_path[0]).shape == (1, 300, 300)
    assert rep["ignored_by_class"] == {"DontCare": 1} and rep["classes"] == ["Person"]


def test_failing_tile_stage_leaves_no_output_and_keeps_the_old(tmp_path):
    root, _ = small_survey(tmp_path / "survey")
    out = tmp_path / "tiles"
    tile_survey(root, "awir", [], tile_params(), out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    # scene b becomes a truncated PNG: found while reading pixels, after tiles were written
    img = root / "deer" / "b.png"
    img.write_bytes(img.read_bytes()[:-100])
    with pytest.raises(InputError, match="deer/b.png"):
        tile_survey(root, "awir", [], tile_params(), out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["survey", "tiles"]  # no temp left
    fresh = tmp_path / "fresh"
    with pytest.raises(InputError):
        tile_survey(root, "awir", [], tile_params(), fresh)
    assert not fresh.exists()


# --- data.on_error ------------------------------------------------------------------------------
def bad_input_survey(root, bad=("jpeg", "geotiff", "class_id")):
    """A good scene plus the asked-for bad inputs: a truncated JPEG (found only when its pixels
    are read), a GeoTIFF that does not open, a label line whose class id is out of range."""
    scenes = [Scene("cow/good", 400, 300, [("cow", 50, 90, 60, 100), ("deer", 200, 240, 100, 150)]),
              Scene("deer/cut", 400, 300, [("deer", 100, 140, 100, 140)], suffix=".jpg"),
              Scene("horse/geo", 400, 300, [("horse", 100, 150, 100, 150)], suffix=".tif")]
    write_awir(root, CLASSES, scenes)
    if "jpeg" in bad:  # noise, so that the cut loses pixel data and not only the trailer
        noise = np.random.default_rng(0).integers(0, 256, (3, 300, 400), np.uint8)
        path = write_raster(root / "deer" / "cut.jpg", noise)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    if "geotiff" in bad:
        path = root / "horse" / "geo.tif"
        path.write_bytes(path.read_bytes()[:64])
    if "class_id" in bad:
        with open(root / "cow" / "good.txt", "a") as f:
            f.write("7 0.5 0.5 0.1 0.1\n")
    return root


@pytest.mark.parametrize("bad, name", [("jpeg", r"deer/cut\.jpg: image does not decode"),
                                       ("geotiff", r"horse/geo\.tif: image does not open"),
                                       ("class_id", r"cow/good\.txt:3: class id 7 not in")])
def test_on_error_stop_stops_at_each_bad_input(tmp_path, bad, name):
    root = bad_input_survey(tmp_path / "survey", bad=(bad,))
    with pytest.raises(InputError, match=name):
        tile_survey(root, "awir", [], tile_params(), tmp_path / "tiles")
    assert not (tmp_path / "tiles").exists()


def test_on_error_skip_drops_counts_and_lists_each_bad_input(tmp_path, caplog):
    from tgmatl.survey.isolate import isolate_samples

    root = bad_input_survey(tmp_path / "survey")
    out = tmp_path / "tiles"
    with caplog.at_level("INFO", logger="tgmatl.survey.tiling"):
        report = tile_survey(root, "awir", [], tile_params(), out, on_error="skip")
    assert json.loads((out / "report.json").read_text()) == report
    c = report["counts"]
    assert (c["dropped_scenes"], c["dropped_labels"], c["boxes_in_dropped_scenes"]) == (2, 1, 1)
    assert (c["scenes"], c["boxes"]) == (1, 2)
    got = {(d["kind"], d["file"]): d["reason"] for d in report["dropped"]}
    assert set(got) == {("scene", "horse/geo.tif"), ("label", "cow/good.txt"),
                        ("scene", "deer/cut.jpg")}
    assert "image does not open" in got["scene", "horse/geo.tif"]
    assert "image does not decode" in got["scene", "deer/cut.jpg"]
    assert "class id 7 not in classes.txt" in got["label", "cow/good.txt"]
    assert report["per_scene"] == {"cow/good": 2}
    # the cut scene's tiles and boxes are gone; targets are renumbered over the kept boxes
    targets = pd.read_parquet(out / "targets.parquet")
    tiles = pd.read_parquet(out / "tiles.parquet")
    assert targets.scene_id.tolist() == ["cow/good"] * 2 and targets.target.tolist() == [0, 1]
    assert set(tiles.scene_id) == {"cow/good"} and set(tiles.target) == {0, 1}
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(
        p.rsplit("/", 1)[1] for p in tiles.image_path.unique())
    summary = [r.getMessage() for r in caplog.records if "on_error skip" in r.getMessage()
               and r.getMessage().startswith("tile:")]
    assert summary == [f"tile: data.on_error skip: dropped 2 scene(s) and 1 label(s); each with "
                       f"its reason in {out / 'report.json'}"]

    m = isolate_samples(out, SimpleNamespace(policy="tile", min_box_px=4), tmp_path / "samples",
                        tmp_path / "data.json", root=root)
    assert m["samples"] == 2
    assert {k: m["input"][k] for k in ("dropped_scenes", "dropped_labels",
                                       "boxes_in_dropped_scenes")} == {
        "dropped_scenes": 2, "dropped_labels": 1, "boxes_in_dropped_scenes": 1}


def test_on_error_skip_with_nothing_bad_changes_nothing(tmp_path):
    root, _ = small_survey(tmp_path / "survey")
    a = tile_survey(root, "awir", [], tile_params(), tmp_path / "a")
    b = tile_survey(root, "awir", [], tile_params(), tmp_path / "b", on_error="skip")
    assert a == b and a["dropped"] == [] and a["counts"]["dropped_scenes"] == 0
    for name in ("tiles.parquet", "targets.parquet"):
        assert pd.read_parquet(tmp_path / "a" / name).equals(pd.read_parquet(tmp_path / "b" / name))
