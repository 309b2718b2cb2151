"""Stage `isolate`: nearest-centre tile, re-centred windows, drops counted, the samples contract."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from fixtures_data import Scene, write_awir

from tgmatl.errors import InputError
from tgmatl.survey.isolate import SAMPLE_SCHEMA, isolate_samples
from tgmatl.survey.raster import read_png
from tgmatl.survey.tiling import tile_survey

CLASSES = ["cow", "deer", "horse"]
CONTRACT = ["sample_id", "scene_id", "image_path", "thermal_path", "class_name", "class_id",
            "xmin", "xmax", "ymin", "ymax", "tile_width", "tile_height", "bands"]


def tile_p(size=300, stride=100, edge="shift", min_visible=0.5):
    return SimpleNamespace(size=size, stride=stride, edge=edge, min_visible=min_visible)


def iso_p(policy="tile", min_box_px=4):
    return SimpleNamespace(policy=policy, min_box_px=min_box_px)


def survey(root, thermal_file=True):
    scenes = [
        Scene("cow/a", 700, 400, [
            ("cow", 250, 290, 150, 190),     # target 0: whole in 6 windows, nearest (100, 0)
            ("deer", 500, 503, 50, 80),      # target 1: 3 px wide -> too small
            ("horse", 0, 40, 300, 340),      # target 2: touches the left border
            ("deer", 280, 330, 320, 380),    # target 3: a normal one
        ], thermal_file=thermal_file),
        Scene("horse/b", 350, 320, [("horse", 100, 160, 120, 170)], thermal_file=thermal_file,
              offset=11),                    # target 4
    ]
    return write_awir(root, CLASSES, scenes), scenes


def run_both(tmp_path, tile=None, iso=None, thermal_file=True):
    root, scenes = survey(tmp_path / "survey", thermal_file)
    tile_survey(root, "awir", [], tile or tile_p(), tmp_path / "tiles")
    m = isolate_samples(tmp_path / "tiles", iso or iso_p(), tmp_path / "samples",
                        tmp_path / "metrics" / "data.json", root=root)
    return root, scenes, m, pd.read_parquet(tmp_path / "samples" / "samples.parquet")


def test_tile_policy_picks_the_nearest_centre_tile_and_counts_drops(tmp_path):
    _, scenes, m, s = run_both(tmp_path)
    assert s.sample_id.tolist() == ["s00000", "s00003", "s00004"]
    first = s.iloc[0]
    # scene a, size 300 stride 100: x offsets 0..400, y 0, 100. Box (250..290, 150..190) is whole
    # in x 0/100/200 x y 0/100; centres (150|250|350, 150|250): nearest (250, 150) -> (100, 0).
    assert (first.xmin, first.xmax, first.ymin, first.ymax) == pytest.approx((150, 190, 150, 190))
    tiles = pd.read_parquet(tmp_path / "tiles" / "tiles.parquet")
    tile = tiles[tiles.image_path == first.image_path].iloc[0]
    assert (tile.col_off, tile.row_off) == (100, 0)
    img = read_png(tmp_path / "samples" / first.image_path)
    np.testing.assert_array_equal(img, scenes[0].pixels()[:, 0:300, 100:400])
    therm = read_png(tmp_path / "samples" / first.thermal_path)[0]
    np.testing.assert_array_equal(therm, scenes[0].thermal()[0:300, 100:400])
    assert m["dropped"] == {"too_small": 1, "cut_by_border": 1, "not_whole_in_tile": 0}
    assert m["dropped_by_class"]["too_small"] == {"cow": 0, "deer": 1, "horse": 0}
    assert m["dropped_by_class"]["cut_by_border"]["horse"] == 1
    assert m["per_class"] == {"cow": 1, "deer": 1, "horse": 1}
    assert "per_scene" not in m  # one key per scene: in the samples' report.json instead
    rep = json.loads((tmp_path / "samples" / "report.json").read_text())
    assert rep["per_scene"] == {"cow/a": 2, "horse/b": 1}
    assert rep["dropped_per_scene"] == {"cow/a": {"cut_by_border": 1, "too_small": 1}}
    tile_rep = json.loads((tmp_path / "tiles" / "report.json").read_text())
    assert tile_rep["per_scene"] == {"cow/a": 4, "horse/b": 1}
    assert (m["targets"], m["samples"]) == (5, 3)
    assert json.loads((tmp_path / "metrics" / "data.json").read_text()) == m


def test_samples_parquet_follows_the_data_contract(tmp_path):
    _, _, _, _ = run_both(tmp_path)
    path = tmp_path / "samples" / "samples.parquet"
    schema = pq.read_schema(path)
    assert schema.names == CONTRACT
    assert pq.read_table(path).schema.remove_metadata() == SAMPLE_SCHEMA
    s = pd.read_parquet(path)
    assert s.sample_id.is_unique and s.sample_id.tolist() == sorted(s.sample_id)
    assert s.class_id.tolist() == [CLASSES.index(c) for c in s.class_name]
    assert (s.bands == 3).all() and (s.tile_width == 300).all() and (s.tile_height == 300).all()
    for r in s.itertuples():
        img = read_png(tmp_path / "samples" / r.image_path)
        assert img.shape == (r.bands, r.tile_height, r.tile_width) and img.dtype == np.uint8
        assert read_png(tmp_path / "samples" / r.thermal_path).shape == (1, 300, 300)
        assert 0 <= r.xmin < r.xmax <= r.tile_width and 0 <= r.ymin < r.ymax <= r.tile_height
    assert (tmp_path / "samples" / "classes.txt").read_text().split() == CLASSES
    assert json.loads(schema.metadata[b"tgmatl"])["classes"] == CLASSES


def test_without_thermal_the_thermal_path_is_null(tmp_path):
    _, _, _, s = run_both(tmp_path, thermal_file=False)
    assert s.thermal_path.isna().all()
    assert not (tmp_path / "samples" / "thermal").exists()


def test_min_box_px_is_a_threshold_on_width_and_height(tmp_path):
    _, _, m, _ = run_both(tmp_path, iso=iso_p(min_box_px=41))
    # sizes: t0 40x40, t1 3x30, t2 40x40 (also at the border: too_small is checked first),
    # t3 50x60, t4 60x50
    assert m["dropped"]["too_small"] == 3 and m["dropped"]["cut_by_border"] == 0
    assert m["samples"] == 2


def test_box_across_every_tile_seam_is_counted_and_recentre_recovers_it(tmp_path):
    tp = tile_p(300, 300, "shift")
    _, _, m, s = run_both(tmp_path, tile=tp)
    # x offsets 0, 300, 400; y 0, 100. t3 (280..330, 320..380) crosses x = 300 in every row
    # holding it: no window holds it whole.
    assert m["dropped"]["not_whole_in_tile"] == 1 and "s00003" not in set(s.sample_id)
    m2 = isolate_samples(tmp_path / "tiles", iso_p("recentre"), tmp_path / "re",
                         tmp_path / "re.json", root=tmp_path / "survey")
    assert m2["dropped"]["not_whole_in_tile"] == 0 and m2["samples"] == m["samples"] + 1


def test_recentre_centres_the_window_and_clamps_it_into_the_scene(tmp_path):
    root, scenes, m, s = run_both(tmp_path, iso=iso_p("recentre"))
    s = s.set_index("sample_id")
    # t0 centre (270, 170) -> window (120, 20); box in window (130..170, 130..170)
    t0 = s.loc["s00000"]
    assert (t0.xmin, t0.xmax, t0.ymin, t0.ymax) == pytest.approx((130, 170, 130, 170))
    np.testing.assert_array_equal(
        read_png(tmp_path / "samples" / t0.image_path), scenes[0].pixels()[:, 20:320, 120:420]
    )
    # t3 centre (305, 350) -> (155, 200) clamped in y to 400 - 300 = 100
    t3 = s.loc["s00003"]
    assert (t3.xmin, t3.ymin) == pytest.approx((280 - 155, 320 - 100))
    # t4 in scene b (350x320): centre (130, 145) -> (-20, -5), clamped to (0, 0)
    t4 = s.loc["s00004"]
    assert (t4.xmin, t4.ymin) == pytest.approx((100, 120))
    np.testing.assert_array_equal(
        read_png(tmp_path / "samples" / t4.thermal_path)[0], scenes[1].thermal()[0:300, 0:300]
    )
    assert s.image_path.tolist() == [f"images/{i}.png" for i in s.index]


def test_recentre_needs_the_root_and_checks_it(tmp_path):
    root, _, _, _ = run_both(tmp_path)
    with pytest.raises(InputError, match="--root"):
        isolate_samples(tmp_path / "tiles", iso_p("recentre"), tmp_path / "x", tmp_path / "x.json")
    other = tmp_path / "other"
    write_awir(other, CLASSES, [
        Scene("cow/a", 710, 400, [("cow", 1, 9, 1, 9)], thermal_file=True),
        Scene("horse/b", 350, 320, [("cow", 1, 9, 1, 9)], thermal_file=True),
    ])
    with pytest.raises(InputError, match=r"cow/a\.png: 710x400, but the tiles were cut from"):
        isolate_samples(tmp_path / "tiles", iso_p("recentre"), tmp_path / "x",
                        tmp_path / "x.json", root=other)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.json").exists()


def test_failing_isolate_leaves_no_output(tmp_path):
    run_both(tmp_path)
    for png in (tmp_path / "tiles" / "images").glob("*.png"):
        png.unlink()
    with pytest.raises(InputError, match="tile image missing"):
        isolate_samples(tmp_path / "tiles", iso_p(), tmp_path / "new", tmp_path / "new.json")
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_same_inputs_give_identical_outputs(tmp_path):
    run_both(tmp_path)
    a = (tmp_path / "samples" / "samples.parquet").read_bytes()
    isolate_samples(tmp_path / "tiles", iso_p(), tmp_path / "again", tmp_path / "again.json")
    assert (tmp_path / "again" / "samples.parquet").read_bytes() == a


def test_stage_scripts_run_with_params_and_report_bad_input(tmp_path, repo_root):
    root, _ = survey(tmp_path / "survey")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["data"]["root"] = str(root)
    params["tile"].update(stride=100)
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))

    def stage(*args):
        return subprocess.run([sys.executable, *args, "--params", str(pfile)], cwd=repo_root,
                              capture_output=True, text=True)

    r = stage("stages/tile.py", "--root", str(root), "--out", str(tmp_path / "tiles"))
    assert r.returncode == 0, r.stderr
    r = stage("stages/isolate.py", "--tiles", str(tmp_path / "tiles"), "--root", str(root),
              "--out", str(tmp_path / "samples"), "--metrics", str(tmp_path / "data.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "data.json").read_text())["samples"] == 3
    # a params error names the key; an input error names the file; both exit 2, one line
    params["tile"]["edge"] = "wrap"
    pfile.write_text(yaml.safe_dump(params))
    r = stage("stages/tile.py", "--root", str(root), "--out", str(tmp_path / "t2"))
    assert r.returncode == 2 and "tile.edge: 'wrap' is not one of" in r.stderr
    params["tile"]["edge"] = "pad"
    pfile.write_text(yaml.safe_dump(params))
    (root / "cow" / "a.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    r = stage("stages/tile.py", "--root", str(root), "--out", str(tmp_path / "t2"))
    assert r.returncode == 2 and "cow/a.txt:1: class id 7 not in classes.txt" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "t2").exists()


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_stage_outputs_get_the_umask_modes(tmp_path, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        run_both(tmp_path)
    finally:
        os.umask(old)
    outputs = [tmp_path / "tiles", tmp_path / "samples", tmp_path / "metrics"]
    paths = [p for top in outputs for p in [top, *top.rglob("*")]]
    assert len(paths) > 10
    for p in paths:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(p.stat().st_mode) == want, p
