"""Bring your own embeddings: `family: precomputed` through stage `embed`, its params, its errors
and the DVC wiring (stage `sources`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from repo_copy import copy_repo

from tgmatl.config import BackboneParams, EmbedParams
from tgmatl.embedding.extraction import embed_samples, read_embeddings
from tgmatl.embedding.precomputed import fingerprint, write_sources
from tgmatl.errors import InputError
from tgmatl.params import ParamsError, parse_section
from tgmatl.planted import planted_survey, write_planted

REPO = Path(__file__).resolve().parents[2]
N, DIM = 23, 8
ENCODER_ONLY = ("image_size", "pooling", "projected", "precision", "bands", "resize", "views",
                "untrained", "mean", "std", "keras_version", "tensorflow_version")


def precomputed(weights: str | Path, name: str = "pre") -> BackboneParams:
    raw = {"family": "precomputed", "weights": str(weights)}
    return parse_section(BackboneParams, raw, f"backbones.{name}")


def embed_params(rows: int = 5) -> EmbedParams:
    raw = {"backbones": ["pre"], "batch_size": 4, "precision": "float32", "bands": "rgb",
           "resize": "stretch", "row_group_size": rows, "devices": "auto"}
    return parse_section(EmbedParams, raw, "embed")


@pytest.fixture()
def survey(tmp_path):
    """samples/samples.parquet (no images: a precomputed backbone reads none) + embeddings."""
    s = planted_survey(N, dim=DIM, n_scenes=5, seed=3)
    (tmp_path / "samples").mkdir()
    write_planted(s, tmp_path / "samples" / "samples.parquet", tmp_path / "planted.parquet")
    return s


def run(tmp_path, weights, rows: int = 5) -> Path:
    out = tmp_path / "emb" / "pre.parquet"
    embed_samples(tmp_path / "samples", out, "pre", precomputed(weights), embed_params(rows), 0)
    return out


# --- the two routes ---------------------------------------------------------------------------
def test_npy_rows_in_samples_order_end_to_end(survey, tmp_path):
    src = tmp_path / "awir_dinov2_emb.npy"
    np.save(src, survey.embeddings.astype(np.float64))  # float64 in, float32 out
    out = run(tmp_path, src)

    ids, x, meta = read_embeddings(out)
    assert ids.tolist() == survey.samples["sample_id"].tolist()
    np.testing.assert_array_equal(x, survey.embeddings)
    schema = pq.read_schema(out)
    assert schema.field("embedding").type == pa.list_(pa.float32(), DIM)
    assert [pq.ParquetFile(out).metadata.row_group(i).num_rows for i in range(5)] == [5] * 4 + [3]
    assert meta == {
        "backbone": "pre", "family": "precomputed", "weights": str(src),
        "weights_kind": "precomputed embeddings (npy)", "source": src.as_posix(),
        "format": "npy", "sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "dim": str(DIM), "n_samples": str(N),
    }
    assert not set(ENCODER_ONLY) & set(meta)


def test_parquet_matched_by_id_in_any_order(survey, tmp_path):
    rng = np.random.default_rng(0)
    order = rng.permutation(N)
    ids = survey.samples["sample_id"].to_numpy()[order]
    rows = [survey.embeddings[i].astype(np.float64).tolist() for i in order]
    src = tmp_path / "mine.parquet"
    pq.write_table(pa.table({"embedding": pa.array(rows, pa.list_(pa.float64())),
                             "sample_id": pa.array(ids)}), src)
    out = run(tmp_path, src)

    got_ids, x, meta = read_embeddings(out)
    assert got_ids.tolist() == survey.samples["sample_id"].tolist()
    np.testing.assert_array_equal(x, survey.embeddings)
    assert meta["format"] == "parquet"
    assert meta["weights_kind"] == "precomputed embeddings (parquet)"
    assert meta["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()

    # the contract's own layout (fixed_size_list<float32>) reads back unchanged, byte for byte
    out2 = run(tmp_path, tmp_path / "planted.parquet")
    np.testing.assert_array_equal(read_embeddings(out2)[1], survey.embeddings)


def test_stage_script_needs_no_tensorflow_and_reports_errors(survey, tmp_path):
    src = tmp_path / "e.npy"
    np.save(src, survey.embeddings)
    params = {"seed": 0, "embed": {**vars(embed_params()), "backbones": ["pre"]},
              "backbones": {"pre": {"family": "precomputed", "weights": str(src)}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "out.parquet"
    # run the script as dvc does, then check that TensorFlow was never imported
    check = (
        "import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\nfinally:\n"
        "    assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    args = [str(REPO / "stages/embed.py"), "--backbone", "pre", "--samples",
            str(tmp_path / "samples"), "--out", str(out), "--params", str(tmp_path / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", check, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(read_embeddings(out)[1], survey.embeddings)

    src.unlink()
    proc = subprocess.run([sys.executable, "-c", check, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tgmatl: error: backbones.pre.weights: ") and "not found" in last


# --- bad input --------------------------------------------------------------------------------
def _npy(tmp_path, arr, name="e.npy") -> Path:
    np.save(tmp_path / name, arr)
    return tmp_path / name


def _parquet(tmp_path, ids, rows, typ=None) -> Path:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"sample_id": pa.array(list(ids), pa.string()),
                             "embedding": pa.array(rows, typ or pa.list_(pa.float32()))}), path)
    return path


def test_missing_file_and_unsupported_suffix(survey, tmp_path):
    with pytest.raises(InputError, match=r"backbones\.pre\.weights: .*gone\.npy: embeddings "
                                         r"file not found"):
        run(tmp_path, tmp_path / "gone.npy")
    csv = tmp_path / "e.csv"
    csv.write_text("s0,1,2\n")
    with pytest.raises(InputError, match=r"backbones\.pre\.weights: .*e\.csv: unsupported "
                                         r"suffix '\.csv'"):
        run(tmp_path, csv)


@pytest.mark.parametrize("shape", [(N,), (N, DIM, 1)])
def test_npy_must_be_2d(survey, tmp_path, shape):
    src = _npy(tmp_path, np.zeros(shape, np.float32))
    with pytest.raises(InputError, match=rf"e\.npy: array of shape \({shape[0]},.*expected a 2-D"):
        run(tmp_path, src)


def test_npy_row_count_and_dtype(survey, tmp_path):
    src = _npy(tmp_path, survey.embeddings[:-1])
    with pytest.raises(InputError, match=rf"e\.npy: {N - 1} rows, but samples\.parquet has {N} "
                                         "samples"):
        run(tmp_path, src)
    src = _npy(tmp_path, np.ones((N, DIM), np.int64))
    with pytest.raises(InputError, match=r"e\.npy: dtype int64; expected floating-point"):
        run(tmp_path, src)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e300])
def test_npy_non_finite_names_the_first_bad_row(survey, tmp_path, bad):
    x = survey.embeddings.astype(np.float64)
    x[7, 2] = bad  # 1e300 overflows float32
    x[12, 0] = np.nan
    sid = survey.samples["sample_id"][7]
    with pytest.raises(InputError, match=rf"e\.npy: row 7 \(sample {sid}\): non-finite"):
        run(tmp_path, _npy(tmp_path, x))


def test_parquet_ids_must_match_the_samples(survey, tmp_path):
    ids = survey.samples["sample_id"].tolist()
    rows = survey.embeddings.tolist()
    with pytest.raises(InputError, match=rf"sample {ids[4]} of samples\.parquet has no "
                                         r"embedding \(1 missing\)"):
        run(tmp_path, _parquet(tmp_path, ids[:4] + ids[5:], rows[:4] + rows[5:]))
    with pytest.raises(InputError, match=r"sample ghost: not in samples\.parquet \(1 such"):
        run(tmp_path, _parquet(tmp_path, [*ids, "ghost"], [*rows, rows[0]]))
    with pytest.raises(InputError, match=rf"e\.parquet: sample {ids[3]}: duplicate sample_id"):
        run(tmp_path, _parquet(tmp_path, [*ids, ids[3]], [*rows, rows[3]]))


def test_parquet_mixed_widths_and_bad_columns(survey, tmp_path):
    ids = survey.samples["sample_id"].tolist()
    rows = survey.embeddings.tolist()
    rows[9] = rows[9][:-1]
    with pytest.raises(InputError, match=rf"sample {ids[9]} \(row 9\): embedding of width "
                                         rf"{DIM - 1}, but row 0 .* has {DIM}"):
        run(tmp_path, _parquet(tmp_path, ids, rows))
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"sample_id": ids, "vector": survey.embeddings.tolist()}), path)
    with pytest.raises(InputError, match=r"e\.parquet: missing column\(s\) embedding"):
        run(tmp_path, path)
    pq.write_table(pa.table({"sample_id": ids, "embedding": [str(r) for r in rows]}), path)
    with pytest.raises(InputError, match=r"column embedding has type string; expected"):
        run(tmp_path, path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, None])
def test_parquet_non_finite_names_the_sample(survey, tmp_path, bad):
    ids = survey.samples["sample_id"].tolist()
    rows = survey.embeddings.tolist()
    rows[15][3] = bad  # None: a null inside the list
    with pytest.raises(InputError, match=rf"e\.parquet: sample {ids[15]} \(row 15\): non-finite"):
        run(tmp_path, _parquet(tmp_path, ids, rows, pa.list_(pa.float32(), DIM)))


# --- params -----------------------------------------------------------------------------------
def test_params_form_of_a_precomputed_backbone():
    p = precomputed("precomputed/awir_dinov2_emb.npy")
    assert (p.family, p.weights) == ("precomputed", "precomputed/awir_dinov2_emb.npy")
    assert (p.image_size, p.pooling, p.projected, p.random) == (None, None, None, None)
    for key, value in (("image_size", 224), ("pooling", "cls"), ("projected", False),
                       ("random", {"patch_size": 14})):
        raw = {"family": "precomputed", "weights": "x.npy", key: value}
        with pytest.raises(ParamsError, match=rf"backbones\.p\.{key}: not used with family: "
                                              "precomputed"):
            parse_section(BackboneParams, raw, "backbones.p")
    with pytest.raises(ParamsError, match=r"backbones\.p\.weights: empty"):
        parse_section(BackboneParams, {"family": "precomputed", "weights": " "}, "backbones.p")


def test_encoders_still_need_every_key():
    raw = {"family": "dinov2", "weights": "random", "image_size": 28, "pooling": "cls",
           "projected": False, "random": {"patch_size": 14, "hidden_dim": 8, "num_layers": 1,
                                          "num_heads": 2, "mlp_dim": 8}}
    assert parse_section(BackboneParams, raw, "backbones.d").image_size == 28
    with pytest.raises(ParamsError, match=r"backbones\.d\.pooling: missing \(required\)"):
        parse_section(BackboneParams, {k: v for k, v in raw.items() if k != "pooling"},
                      "backbones.d")
    with pytest.raises(ParamsError, match=r"backbones\.d\.image_size: missing \(required for "
                                          "family dinov2"):
        parse_section(BackboneParams, {**raw, "image_size": None}, "backbones.d")


# --- DVC: stage sources and the wiring of embed@<name> ----------------------------------------
def test_fingerprints_follow_the_content_of_the_file(survey, tmp_path):
    folder = tmp_path / "precomputed"
    folder.mkdir()
    src = _npy(folder, survey.embeddings)
    random = parse_section(BackboneParams, yaml.safe_load((REPO / "params.yaml").read_text())
                           ["backbones"]["dinov2"], "backbones.dinov2")
    backbones = {"pre": precomputed(src), "dinov2": random}
    write_sources(tmp_path / "sources", backbones, folder)
    first = {p.name: p.read_bytes() for p in (tmp_path / "sources").iterdir()}
    assert set(first) == {"pre.json", "dinov2.json"}
    assert json.loads(first["dinov2.json"]) == {"backbone": "dinov2", "family": "dinov2",
                                                "weights": "random"}
    fp = json.loads(first["pre.json"])
    assert fp["format"] == "npy" and fp["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()

    _npy(folder, survey.embeddings + 1)  # same shape, new content
    write_sources(tmp_path / "sources", backbones, folder)
    second = {p.name: p.read_bytes() for p in (tmp_path / "sources").iterdir()}
    assert second["dinov2.json"] == first["dinov2.json"]
    assert second["pre.json"] != first["pre.json"]


def test_a_file_outside_the_watched_folder_is_refused(survey, tmp_path):
    (tmp_path / "precomputed").mkdir()
    src = _npy(tmp_path, survey.embeddings)
    with pytest.raises(ParamsError, match=r"backbones\.pre\.weights: .*e\.npy is outside "
                                          r".*precomputed/, the folder dvc\.yaml watches"):
        fingerprint("pre", precomputed(src), tmp_path / "precomputed")
    assert fingerprint("pre", precomputed(src), None)["format"] == "npy"
    with pytest.raises(InputError, match="not found"):
        fingerprint("pre", precomputed(tmp_path / "precomputed" / "none.npy"), tmp_path)


def test_dvc_yaml_wiring():
    """embed@<name> depends on its own fingerprint; `sources` watches precomputed/ and reads no
    sampling.* (a sampling experiment must not touch it)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    sources, embed = stages["sources"], stages["embed"]
    assert "--inputs precomputed" in sources["cmd"] and "--out data/sources" in sources["cmd"]
    assert "precomputed" in sources["deps"] and sources["outs"] == ["data/sources"]
    assert not any(str(p).startswith(("sampling", "seed", "train")) for p in sources["params"])
    assert "data/sources/${item}.json" in embed["do"]["deps"]
    assert (REPO / "precomputed").is_dir() and any((REPO / "precomputed").iterdir())


@pytest.mark.slow
def test_dvc_reruns_only_the_changed_backbone(repo_root, tmp_path):
    """In a git copy: a changed precomputed file reruns `sources` and its embed@ only."""
    work = copy_repo(repo_root, tmp_path / "repo")
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["demo"].update(targets_per_scene=5, width=800, height=600, n_targets=20)
    params["embed"]["backbones"] = ["dinov2", "pre"]
    params["backbones"]["pre"] = {"family": "precomputed", "weights": "precomputed/pre.npy"}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(work / "src"), "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("DVC_ROOT", None)

    def sh(*args: str) -> str:
        proc = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    def ran(out: str) -> set[str]:
        import re

        return set(re.findall(r"Running stage '([^']+)'", out))

    sh("git", "init", "-q")
    sh(str(venv_bin / "dvc"), "repro", "isolate")
    n = len(pq.read_table(work / "data/samples/samples.parquet", columns=["sample_id"]))
    rng = np.random.default_rng(0)
    np.save(work / "precomputed/pre.npy", rng.normal(size=(n, 6)).astype(np.float32))
    out = sh(str(venv_bin / "dvc"), "repro", "embed")
    assert ran(out) == {"sources", "embed@dinov2", "embed@pre"}, out[-3000:]
    assert read_embeddings(work / "data/embeddings/pre.parquet")[2]["family"] == "precomputed"

    np.save(work / "precomputed/pre.npy", rng.normal(size=(n, 6)).astype(np.float32))
    out = sh(str(venv_bin / "dvc"), "repro", "embed")
    assert ran(out) == {"sources", "embed@pre"}, out[-3000:]

    (work / "precomputed/README.md").write_text("edited\n")
    out = sh(str(venv_bin / "dvc"), "repro", "embed")
    assert ran(out) == {"sources"}, out[-3000:]
