"""Real imagery: HIT-UAV thermal (Pascal VOC, single band, DontCare) through `tile` and `isolate`.

Runs the two stage scripts as a user would, with a params file saying ``format: voc`` and
``ignore_classes: [DontCare]``, and checks the counts against the XML read independently here.
To keep the suite fast it runs on every third frame (193 of 579, linked into a folder of the
same layout); ``benchmarks/bench_tiling.py`` runs the whole set.
"""

import json
import subprocess
import sys
import warnings
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.windows import Window

from tgmatl.survey.raster import read_png

pytestmark = pytest.mark.slow


EVERY = 3


@pytest.fixture(scope="module")
def hit_uav(shared_dir, tmp_path_factory):
    full = shared_dir / "data" / "hit-uav-thermal"
    if not (full / "annotations").is_dir():
        pytest.skip(f"HIT-UAV not available: {full}/annotations is absent")
    root = tmp_path_factory.mktemp("hit-uav")
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    for xml in sorted((full / "annotations").glob("*.xml"))[::EVERY]:
        image = ET.parse(xml).getroot().findtext("filename")
        (root / "annotations" / xml.name).symlink_to(xml)
        (root / "images" / image).symlink_to(full / "images" / image)
    return root


def independent_counts(root, min_box_px):
    """Targets per class, DontCare boxes, frames without objects and the drops by reason,
    straight from the XML files."""
    targets, ignored, empty, too_small, border = Counter(), 0, 0, 0, 0
    for xml in sorted((root / "annotations").glob("*.xml")):
        tree = ET.parse(xml).getroot()
        w, h = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        empty += not tree.findall("object")
        for obj in tree.iter("object"):
            name = obj.findtext("name")
            if name == "DontCare":
                ignored += 1
                continue
            targets[name] += 1
            x0, y0, x1, y1 = (float(obj.findtext(f"bndbox/{k}"))
                              for k in ("xmin", "ymin", "xmax", "ymax"))
            if x1 - x0 < min_box_px or y1 - y0 < min_box_px:
                too_small += 1
            elif obj.findtext("truncated") == "1" or x0 <= 0 or y0 <= 0 or x1 >= w or y1 >= h:
                border += 1
    return targets, ignored, empty, too_small, border


def test_hit_uav_through_tile_and_isolate(hit_uav, tmp_path, repo_root):
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["data"].update(root=str(hit_uav), format="voc", ignore_classes=["DontCare"])
    params["isolate"]["policy"] = "tile"  # the windows checked below are the tiles
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    tiles, samples, metrics = tmp_path / "tiles", tmp_path / "samples", tmp_path / "data.json"
    for cmd in (
        ["stages/tile.py", "--root", str(hit_uav), "--out", str(tiles)],
        ["stages/isolate.py", "--tiles", str(tiles), "--root", str(hit_uav),
         "--out", str(samples), "--metrics", str(metrics)],
    ):
        r = subprocess.run([sys.executable, *cmd, "--params", str(pfile)], cwd=repo_root,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]

    m = json.loads(metrics.read_text())
    targets, ignored, empty, too_small, border = independent_counts(
        hit_uav, params["isolate"]["min_box_px"]
    )
    report = json.loads((tiles / "report.json").read_text())
    assert report["classes"] == sorted(targets) == ["Bicycle", "Car", "OtherVehicle", "Person"]
    assert report["ignored_by_class"].get("DontCare", 0) == ignored
    assert m["targets"] == sum(targets.values())
    assert m["dropped"]["too_small"] == too_small
    assert m["dropped"]["cut_by_border"] == border
    assert m["samples"] + sum(m["dropped"].values()) == m["targets"]
    dropped_per_class = Counter()
    for by_class in m["dropped_by_class"].values():
        dropped_per_class.update(by_class)
    assert {c: m["per_class"][c] + dropped_per_class[c] for c in targets} == dict(targets)
    assert m["input"]["no_targets"] == empty

    s = pd.read_parquet(samples / "samples.parquet")
    assert len(s) == m["samples"] and s.sample_id.is_unique
    assert (s.bands == 1).all() and s.thermal_path.isna().all()
    assert s.class_id.tolist() == [report["classes"].index(c) for c in s.class_name]
    assert ((s.xmin >= 0) & (s.xmax <= s.tile_width) & (s.ymin >= 0)
            & (s.ymax <= s.tile_height)).all()

    # A spread of samples: pixels are the frame's window, the box is the XML box moved into it.
    t = pd.read_parquet(tiles / "targets.parquet").set_index("target")
    tl = pd.read_parquet(tiles / "tiles.parquet").drop_duplicates("image_path")
    tl = tl.set_index("image_path")
    for r in s.iloc[np.linspace(0, len(s) - 1, 12).astype(int)].itertuples():
        target = t.loc[int(r.sample_id[1:])]
        obj = ET.parse(hit_uav / target.source).getroot().findall("object")
        k = int(target["item"].split()[1]) - 1
        box = [float(obj[k].findtext(f"bndbox/{n}")) for n in ("xmin", "xmax", "ymin", "ymax")]
        win = tl.loc[r.image_path]
        assert [r.xmin + win.col_off, r.xmax + win.col_off, r.ymin + win.row_off,
                r.ymax + win.row_off] == box
        with warnings.catch_warnings():  # a plain JPEG; rasterio's boundless read uses `*`
            warnings.simplefilter("ignore")
            with rasterio.open(hit_uav / target.scene_path) as src:
                want = src.read(1, window=Window(win.col_off, win.row_off, 300, 300),
                                boundless=True)
        np.testing.assert_array_equal(read_png(samples / r.image_path)[0], want)
