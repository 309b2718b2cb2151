"""The `split`, `score` and `select` stage scripts end to end on a tiny generated samples file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"select": "select_masks"}  # stage name -> script (select.py would shadow stdlib)
PARAMS = {
    "seed": 0,
    "split": {"test_size": 0.5, "folds": 3, "geometry_bins": 2, "group": "none"},
    "eval": {"repeats": 2, "resplit": True, "alpha": 0.05, "retrieval_queries": 2000,
             "margin": {"accuracy": 0.02, "r2": 0.03, "class_map_at_r": 0.02,
                        "box_map_at_r": 0.02}},
    "geometry": {"features": ["area", "squareness"], "box_label": {"method": "kmeans", "k": 3}},
    "mi": {"n_neighbors": 3, "score": "eq5"},
    "sampling": {
        "top_pct": 0.2,
        "random_pct": 0.2,
        "random": "random",
        "scope": "dataset",
        "negatives": "all",
    },
}


def write_samples(path: Path, n: int = 48) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    cls = np.arange(n) % 3
    w = rng.uniform(6, 30, n) + 8 * cls
    h = rng.uniform(6, 30, n)
    x0 = rng.uniform(0, 200, n)
    df = pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "scene_id": "scene0",
            "image_path": [f"s{i:05d}.png" for i in range(n)],
            "thermal_path": None,
            "class_name": np.array(["cow", "deer", "horse"])[cls],
            "class_id": cls,
            "xmin": x0,
            "xmax": x0 + w,
            "ymin": 10.0,
            "ymax": 10.0 + h,
            "tile_width": 300,
            "tile_height": 300,
            "bands": 3,
        }
    )
    df.to_parquet(path)
    return df


def run_stage(name: str, params: dict, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    cmd = [
        sys.executable,
        str(ROOT / "stages" / f"{SCRIPTS.get(name, name)}.py"),
        "--params",
        str(params_path),
    ]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stages")
    samples = write_samples(tmp / "samples.parquet")
    paths = {k: tmp / f"{k}.parquet" for k in ("split", "scores", "masks")}
    paths["mi"] = tmp / "metrics" / "mi.json"
    r = run_stage(
        "split",
        PARAMS,
        tmp,
        "--samples",
        str(tmp / "samples.parquet"),
        "--out",
        str(paths["split"]),
    )
    assert r.returncode == 0, r.stderr
    r = run_stage(
        "score",
        PARAMS,
        tmp,
        "--samples",
        str(tmp / "samples.parquet"),
        "--split",
        str(paths["split"]),
        "--out",
        str(paths["scores"]),
        "--metrics",
        str(paths["mi"]),
    )
    assert r.returncode == 0, r.stderr
    r = run_stage(
        "select", PARAMS, tmp, "--scores", str(paths["scores"]), "--out", str(paths["masks"])
    )
    assert r.returncode == 0, r.stderr
    return tmp, samples, paths


def test_split_output(outputs):
    _, samples, paths = outputs
    split = pd.read_parquet(paths["split"])
    assert list(split.columns) == ["repeat", "sample_id", "test", "fold"]
    assert str(split.fold.dtype) == "int32" and str(split.test.dtype) == "bool"
    assert set(split.repeat) == {0, 1}
    for _, rep in split.groupby("repeat"):
        assert rep.sample_id.tolist() == samples.sample_id.tolist()
        assert set(rep.fold[~rep.test]) == {0, 1, 2} and (rep.fold[rep.test] == -1).all()
    # resplit: the second repeat redraws the test split too
    assert (split.test[split.repeat == 0].to_numpy() != split.test[split.repeat == 1]
            .to_numpy()).any()


def test_scores_output(outputs):
    _, samples, paths = outputs
    scores = pd.read_parquet(paths["scores"])
    assert list(scores.columns) == [
        "repeat",
        "fold",
        "sample_id",
        "role",
        "class_id",
        "feat_area",
        "feat_squareness",
        "box_label",
        "score",
    ]
    assert str(scores.fold.dtype) == "int32" and str(scores.box_label.dtype) == "int32"
    assert str(scores.score.dtype) == "float64"
    assert len(scores) == 2 * 3 * len(samples)
    assert set(scores.role) == {"train", "val", "test"}
    assert scores[["feat_area", "feat_squareness"]].stack().between(0, 1).all()
    meta = json.loads(pq.read_schema(paths["scores"]).metadata[b"tgmatl"])
    assert meta["features"] == ["area", "squareness"]
    assert set(meta["mi"]) == {f"{r}/{f}" for r in range(2) for f in range(3)}
    assert set(meta["mi"]["0/0"]) == {"area", "squareness"}
    table1 = json.loads(paths["mi"].read_text())
    assert set(table1) == {"mi", "score_kind", "score"} and table1["score_kind"] == "eq5"
    assert meta["score"] == "eq5"
    assert set(table1["score"]) == {"cow", "deer", "horse"}
    assert set(table1["score"]["cow"]) == {"count", "mean", "std", "min", "max"}
    assert sum(v["count"] for v in table1["score"].values()) == len(samples)


def test_masks_output(outputs):
    _, _, paths = outputs
    masks = pd.read_parquet(paths["masks"])
    scores = pd.read_parquet(paths["scores"])
    assert list(masks.columns) == ["repeat", "fold", "sample_id", "mask"]
    assert str(masks.fold.dtype) == "int32" and str(masks["mask"].dtype) == "bool"
    train = scores[scores.role == "train"]
    assert len(masks) == len(train)
    # per unit and class: n_top + n_rand = ⌊0.2 n⌋ (>= 1) + ⌊0.2 n⌋
    merged = masks.merge(train, on=["repeat", "fold", "sample_id"])
    for _, g in merged.groupby(["repeat", "fold", "class_id"]):
        n = len(g)
        assert g["mask"].sum() == max(1, int(0.2 * n + 1e-9)) + int(0.2 * n + 1e-9)


def test_pointwise_score_then_select(outputs, tmp_path):
    """``mi.score: pointwise`` through the score and select scripts: training rows are ranked
    by their pointwise MI, val/test rows are NaN, and the metadata / Table I say so."""
    tmp, _, paths = outputs
    params = {**PARAMS, "mi": {"n_neighbors": 3, "score": "pointwise"}}
    out, mi_json, masks = tmp_path / "scores.parquet", tmp_path / "mi.json", tmp_path / "m.parquet"
    r = run_stage("score", params, tmp_path, "--samples", str(tmp / "samples.parquet"),
                  "--split", str(paths["split"]), "--out", str(out), "--metrics", str(mi_json))
    assert r.returncode == 0, r.stderr
    scores = pd.read_parquet(out)
    train = scores.role == "train"
    assert scores.score[train].notna().all() and scores.score[~train].isna().all()
    eq5 = pd.read_parquet(paths["scores"])
    assert not np.allclose(scores.score[train], eq5.score[train])
    meta = json.loads(pq.read_schema(out).metadata[b"tgmatl"])
    assert meta["score"] == "pointwise"
    assert set(meta["joint_mi"]) == {f"{r}/{f}" for r in range(2) for f in range(3)}
    table1 = json.loads(mi_json.read_text())
    assert table1["score_kind"] == "pointwise" and table1["joint_mi"] >= 0
    r = run_stage("select", params, tmp_path, "--scores", str(out), "--out", str(masks))
    assert r.returncode == 0, r.stderr
    assert len(pd.read_parquet(masks)) == int(train.sum())


def test_reruns_identical(outputs, tmp_path):
    tmp, _, paths = outputs
    out = tmp_path / "masks.parquet"
    r = run_stage("select", PARAMS, tmp_path, "--scores", str(paths["scores"]), "--out", str(out))
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(paths["masks"]))


def test_bad_params_and_inputs_exit_2(outputs, tmp_path):
    tmp, samples, paths = outputs
    bad = {**PARAMS, "sampling": {**PARAMS["sampling"], "top_pct": 0.0}}
    r = run_stage("select", bad, tmp_path, "--scores", str(paths["scores"]), "--out", "x.parquet")
    assert r.returncode == 2 and "sampling.top_pct" in r.stderr
    broken = samples.copy()
    broken.loc[5, "xmax"] = broken.loc[5, "xmin"]
    broken.to_parquet(tmp_path / "bad.parquet")
    r = run_stage(
        "split", PARAMS, tmp_path, "--samples", str(tmp_path / "bad.parquet"), "--out", "x.parquet"
    )
    assert r.returncode == 2 and "s00005" in r.stderr and "bad.parquet" in r.stderr
    assert not (ROOT / "x.parquet").exists()
