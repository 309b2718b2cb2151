"""The synthetic survey: determinism, AWIR layout, labels, georeference, thermal, params."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml
from rasterio.errors import NotGeoreferencedWarning
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import mutual_info_classif
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tgmatl.config import DemoParams
from tgmatl.params import ParamsError, parse_section
from tgmatl.survey.demo import class_counts, generate_survey
from tgmatl.survey.demo import survey as survey_mod
from tgmatl.survey.demo.species import species_for

REPO = Path(__file__).resolve().parents[2]
SCENE_EXT = (".jpg", ".png", ".tif")

BASE = {
    "targets_per_scene": 5, "width": 640, "height": 480, "n_targets": 20,
    "classes": ["cow", "deer", "horse"], "class_weights": [116, 51, 73],
    "geotiff_fraction": 0.5, "thermal": "file", "mixed_scene_fraction": 0.4,
    "touching_fraction": 0.15,
    "occlusion_fraction": 0.25, "jpeg_quality": 92, "image_format": "jpg", "gsd_m": 0.02,
}


def params(**over) -> DemoParams:
    return parse_section(DemoParams, {**BASE, **over}, "demo")


def read(path: Path) -> rasterio.DatasetReader:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def scenes(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*") if p.suffix in SCENE_EXT
                  and not p.stem.endswith("_thermal"))


def boxes(txt: Path) -> list[tuple[int, float, float, float, float]]:
    out = []
    for line in txt.read_text().splitlines():
        c, *rest = line.split()
        out.append((int(c), *map(float, rest)))
    return out


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "survey"
    return out, generate_survey(params(), 0, out)


@pytest.fixture(scope="module")
def survey240(tmp_path_factory) -> Path:
    """The default class mix and count (240 targets), on smaller scenes to stay quick."""
    out = tmp_path_factory.mktemp("demo240") / "survey"
    p = params(targets_per_scene=10, width=800, height=640, n_targets=240, geotiff_fraction=0.0,
               thermal="none")
    generate_survey(p, 0, out)
    return out


# --- determinism ------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_output(small, tmp_path):
    root, _ = small
    again = tmp_path / "again"
    generate_survey(params(), 0, again)
    first = digest(root)
    assert len(first) > 4 * 3  # scenes, labels and thermal files were hashed
    assert digest(again) == first


def test_different_seed_gives_different_output(small, tmp_path):
    root, _ = small
    other = tmp_path / "other"
    generate_survey(params(), 1, other)
    a, b = digest(root), digest(other)
    shared = set(a) & set(b)
    assert a != b and all(a[k] != b[k] for k in shared if k != "classes.txt")


# --- layout -----------------------------------------------------------------------------------
def test_awir_layout(small):
    root, summary = small
    assert (root / "classes.txt").read_text().splitlines() == ["cow", "deer", "horse"]
    found = scenes(root)
    assert len(found) == 4 == summary["scenes"]
    for img in found:
        txt = img.with_suffix(".txt")
        assert txt.is_file(), txt
        ids = [b[0] for b in boxes(txt)]
        majority = int(np.argmax(np.bincount(ids, minlength=3)))
        assert img.parent.name == ["cow", "deer", "horse"][majority]  # folder = majority class
        thermal = img.with_name(f"{img.stem}_thermal.tif")
        with read(img) as s, read(thermal) as t:
            assert (t.count, t.dtypes[0]) == (1, "uint8")
            assert (t.width, t.height) == (s.width, s.height) == (640, 480)
            assert t.crs == s.crs and t.transform == s.transform  # co-registered
    files = {p.name for p in root.rglob("*") if p.is_file()}
    assert all(f == "classes.txt" or f.endswith((".jpg", ".tif", ".txt")) for f in files)
    # nothing temporary left beside the output
    assert [p.name for p in root.parent.iterdir()] == ["survey"]


def test_yolo_lines_parse_and_boxes_lie_inside(small):
    root, _ = small
    n = 0
    for img in scenes(root):
        lines = img.with_suffix(".txt").read_text().splitlines()
        for line in lines:
            parts = line.split()
            assert len(parts) == 5 and all(len(v.split(".")[1]) == 6 for v in parts[1:])
        for c, cx, cy, w, h in boxes(img.with_suffix(".txt")):
            assert c in (0, 1, 2) and w > 0 and h > 0
            # fully inside, with a margin: no target is cut by the scene border
            assert cx - w / 2 > 0.005 and cx + w / 2 < 0.995, line
            assert cy - h / 2 > 0.005 and cy + h / 2 < 0.995, line
            n += 1
    assert n == 20


def test_geotiff_scenes_carry_crs_and_transform(small):
    root, summary = small
    tifs = [p for p in scenes(root) if p.suffix == ".tif"]
    assert len(tifs) == summary["geotiff_scenes"] == 2  # round(0.5 * 4)
    origins = set()
    for p in tifs:
        with read(p) as ds:
            assert ds.crs is not None and ds.crs.to_epsg() == 32633
            assert (ds.count, ds.dtypes[0]) == (3, "uint8")
            assert ds.transform.a == pytest.approx(0.02) and ds.transform.e == pytest.approx(-0.02)
            assert 100_000 < ds.transform.c < 900_000 and 0 < ds.transform.f < 10_000_000
            origins.add((ds.transform.c, ds.transform.f))
    assert len(origins) == len(tifs)  # each scene its own footprint
    for p in scenes(root):
        if p.suffix == ".jpg":
            with read(p) as ds:
                assert ds.crs is None and ds.count == 3


# --- counts and geometry ----------------------------------------------------------------------
def test_class_counts_largest_remainder():
    assert class_counts((116, 51, 73), 240) == [116, 51, 73]
    assert class_counts((1, 1, 1), 10) == [4, 3, 3]
    assert class_counts((116, 51, 73), 20) == [10, 4, 6]
    assert sum(class_counts((0.3, 0.3, 0.4), 7)) == 7


def test_targets_per_class_follow_weights(small, survey240):
    root, summary = small
    for folder, n in ((root, 20), (survey240, 240)):
        ids = [b[0] for t in folder.glob("*/*.txt") for b in boxes(t)]
        counts = np.bincount(ids, minlength=3).tolist()
        assert counts == class_counts((116, 51, 73), n) and sum(counts) == n
    assert summary["per_class"] == {"cow": 10, "deer": 4, "horse": 6}


def test_geometry_informs_class_but_overlaps(survey240):
    rows = [(c, w * 800, h * 640) for t in survey240.glob("*/*.txt")
            for c, _, _, w, h in boxes(t)]
    y = np.array([r[0] for r in rows])
    w, h = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
    area, square = w * h, 1 - np.minimum(w / h, h / w)
    x = np.c_[area, square]
    x = (x - x.min(0)) / (x.max(0) - x.min(0))
    mi = mutual_info_classif(x, y, n_neighbors=3, random_state=0)
    assert (mi > 0.05).all(), mi  # each feature says something about the class
    # the species' order of size matches the paper's data: deer < cow < horse on average
    means = [area[y == c].mean() for c in range(3)]
    assert means[1] < means[0] < means[2]
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    for clf in (make_pipeline(StandardScaler(), KNeighborsClassifier(7)),
                RandomForestClassifier(100, min_samples_leaf=3, random_state=0)):
        acc = cross_val_score(clf, x, y, cv=cv).mean()
        assert 116 / 240 + 0.05 < acc < 0.95, acc  # informative, but not a give-away


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.9])
def test_mixed_scene_fraction(fraction):
    """Exchanges mix the requested share of scenes, keeping scene sizes and class totals."""
    p = params(targets_per_scene=2.5, width=800, height=600, n_targets=240,
               mixed_scene_fraction=fraction)
    plans = survey_mod.plan_survey(p, np.random.default_rng(5))
    ids = [[a.class_id for a in scene] for scene in plans]
    assert len(ids) == 96 and min(map(len, ids)) >= 1
    assert np.bincount(sum(ids, [])).tolist() == class_counts((116, 51, 73), 240)
    mixed = sum(len(set(s)) > 1 for s in ids)
    multi = sum(len(s) > 1 for s in ids)
    if fraction == 0.0:
        assert mixed <= 2  # herds only: at most the class boundaries mix
    else:  # the requested share (one over: an exchange may mix two), or near every scene of
        # more than one animal
        target = round(fraction * 96)
        assert min(target, multi - 2) <= mixed <= target + 1
    again = survey_mod.plan_survey(p, np.random.default_rng(5))
    assert again == plans


# --- thermal ----------------------------------------------------------------------------------
def _warm_vs_ground(img: Path, thermal: np.ndarray) -> tuple[float, float]:
    hgt, wid = thermal.shape
    ground = np.ones_like(thermal, bool)
    cores = []
    for _, cx, cy, w, h in boxes(img.with_suffix(".txt")):
        x0, x1 = int((cx - w / 2) * wid), int(np.ceil((cx + w / 2) * wid))
        y0, y1 = int((cy - h / 2) * hgt), int(np.ceil((cy + h / 2) * hgt))
        ground[y0:y1, x0:x1] = False
        r = max(1, int(0.1 * min(w * wid, h * hgt)))  # the box centre lies on the trunk
        cxp, cyp = int(cx * wid), int(cy * hgt)
        cores.append(thermal[cyp - r:cyp + r + 1, cxp - r:cxp + r + 1].mean())
    return float(np.mean(cores)), float(thermal[ground].mean())


def test_thermal_animals_warmer_than_ground(small):
    root, _ = small
    for img in scenes(root):
        with read(img.with_name(f"{img.stem}_thermal.tif")) as ds:
            animal, ground = _warm_vs_ground(img, ds.read(1))
        assert animal > ground + 40, (img.name, animal, ground)


def test_thermal_band_in_geotiff_and_png(tmp_path):
    out = tmp_path / "geo"
    generate_survey(params(targets_per_scene=3, n_targets=6, thermal="band",
                           geotiff_fraction=1.0), 3, out)
    found = scenes(out)
    assert [p.suffix for p in found] == [".tif", ".tif"]
    assert not list(out.rglob("*_thermal.tif"))
    for p in found:
        with read(p) as ds:
            assert ds.count == 4 and ds.crs is not None
            assert ds.descriptions == ("red", "green", "blue", "thermal")
            assert ds.colorinterp[3].name != "alpha"
            animal, ground = _warm_vs_ground(p, ds.read(4))
            assert animal > ground + 40
    out = tmp_path / "png"
    generate_survey(params(targets_per_scene=3, n_targets=6, thermal="band", geotiff_fraction=0.0,
                           image_format="png"), 3, out)
    for p in scenes(out):
        assert p.suffix == ".png"
        with read(p) as ds:
            assert ds.count == 4


def test_no_thermal(tmp_path):
    out = tmp_path / "none"
    generate_survey(params(targets_per_scene=3, n_targets=3, thermal="none",
                           geotiff_fraction=0.0), 0, out)
    assert not list(out.rglob("*_thermal.tif")) and len(scenes(out)) == 1


# --- classes beyond the built-in three ---------------------------------------------------------
def test_unknown_class_names_get_a_body_plan_from_their_index(tmp_path):
    assert species_for("alpaca", 3) == species_for("llama", 3)
    assert species_for("alpaca", 3) != species_for("alpaca", 4)
    assert species_for("Cow", 7) == species_for("cow", 0)
    out = tmp_path / "four"
    p = params(targets_per_scene=6, n_targets=12, classes=["cow", "deer", "horse", "alpaca"],
               class_weights=[1, 1, 1, 1], thermal="none")
    summary = generate_survey(p, 0, out)
    assert summary["per_class"] == {"cow": 3, "deer": 3, "horse": 3, "alpaca": 3}
    assert (out / "classes.txt").read_text().splitlines()[-1] == "alpaca"


# --- atomic output ------------------------------------------------------------------------------
def test_interrupted_run_keeps_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    p = params(targets_per_scene=2, n_targets=4, thermal="none")
    generate_survey(p, 0, out)
    before = digest(out)
    calls = {"n": 0}
    real = survey_mod.render_scene

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(survey_mod, "render_scene", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_survey(p, 5, out)
    assert digest(out) == before
    assert [x.name for x in tmp_path.iterdir()] == ["demo"]


# --- params validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"class_weights": [1, 2]}, "demo.class_weights"),
        ({"thermal": "band"}, "demo.thermal"),
        ({"n_targets": 0}, "demo.n_targets"),
        ({"targets_per_scene": 0.5}, "demo.targets_per_scene"),
        ({"classes": ["cow", "Cow", "deer"]}, "demo.classes"),
        ({"classes": ["cow", "a/b", "deer"]}, "demo.classes"),
        ({"image_format": "gif"}, "demo.image_format"),
        ({"gsd_m": 0.0}, "demo.gsd_m"),
        ({"width": 100}, "demo.width"),
        ({"jpeg_quality": 101}, "demo.jpeg_quality"),
    ],
)
def test_invalid_params_name_the_key(over, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        params(**over)


def test_thermal_band_allowed_with_png_or_all_geotiff():
    assert params(thermal="band", image_format="png").thermal == "band"
    assert params(thermal="band", geotiff_fraction=1.0).thermal == "band"


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"gsd_m": 0.005}, "demo.gsd_m"),  # a horse would not fit a 640x480 scene
        ({"targets_per_scene": 500, "n_targets": 500}, "demo.targets_per_scene"),
    ],
)
def test_survey_that_cannot_fit_names_the_key(tmp_path, over, key):
    with pytest.raises(ParamsError, match=key.replace(".", r"\.")):
        generate_survey(params(**over), 0, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# --- stage script -------------------------------------------------------------------------------
def test_stage_script_writes_the_survey(tmp_path):
    spec = importlib.util.spec_from_file_location("demo_stage", REPO / "stages" / "demo.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    raw = {"seed": 2, "demo": {**BASE, "targets_per_scene": 2, "n_targets": 2, "thermal": "none"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params_doc = yaml.safe_load((tmp_path / "params.yaml").read_text())
    stage.main(argparse.Namespace(out=str(tmp_path / "out"), params="unused"), params_doc)
    assert len(scenes(tmp_path / "out")) == 1
    # the repo's params.yaml has a valid demo section
    repo_params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert parse_section(DemoParams, repo_params["demo"], "demo").n_targets >= 1
