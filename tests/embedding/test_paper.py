"""`make paper` (python -m tgmatl.embedding.paper): weights checked first; a missing one changes
nothing.

Offline the paper's folders are absent: the command must stop at once (no TensorFlow, no dvc),
name every missing folder with the download that fills it, and leave every file as it was. With
the weights in local folders (tiny ones here: the Hugging Face fixtures and a saved random CLIP)
it runs the pipeline as a DVC experiment with the overlay's values.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from repo_copy import commit_all, copy_repo, dvc_env

from tgmatl.embedding import paper
from tgmatl.embedding.backbones import weights as weights_mod
from tgmatl.params import ParamsError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture
def work(repo_root, tmp_path, monkeypatch):
    for name in ("params.yaml", "params.paper.yaml"):
        shutil.copyfile(repo_root / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)

    def no_run(*a, **k):
        raise AssertionError(f"nothing may run: {a}")

    monkeypatch.setattr(paper.subprocess, "run", no_run)
    return tmp_path


def fake_keras_folder(path: Path) -> Path:
    """The layout of a keras-hub preset folder (enough for the check, which loads nothing)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"registered_name": "keras_hub>CLIPBackbone"}))
    (path / "metadata.json").write_text("{}")
    (path / "model.weights.h5").write_bytes(b"")
    return path


def test_missing_weights_stop_before_anything_runs_or_changes(work, capsys):
    before = _snapshot(work)
    assert paper.main([]) == 2
    err = capsys.readouterr().err
    assert "nothing was run or changed" in err
    overlay = yaml.safe_load((work / "params.paper.yaml").read_text())["backbones"]
    for name, download in (("dinov2", "DINOV2Backbone.from_preset('dinov2_base')"),
                           ("mae", "snapshot_download('facebook/vit-mae-base'"),
                           ("clip", "CLIPBackbone.from_preset('clip_vit_base_patch16')")):
        folder = overlay[name]["weights"]
        assert f"backbones.{name}.weights: folder '{folder}' not found" in err
        assert download in err and f"'{folder}'" in err
    assert _snapshot(work) == before


def test_the_check_needs_no_tensorflow(repo_root, tmp_path):
    code = ("import sys\nfrom tgmatl.embedding import paper\nrc = paper.main([])\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "raise SystemExit(rc)")
    for name in ("params.yaml", "params.paper.yaml"):
        shutil.copyfile(repo_root / name, tmp_path / name)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "PYTHONPATH": str(repo_root / "src")},
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert "backbones.mae.weights" in r.stderr


def test_local_folders_pass_and_give_the_dvc_command(work, capsys):
    shutil.copytree(FIXTURES / "dinov2", work / "models" / "dinov2_base")
    shutil.copytree(FIXTURES / "mae_pretraining", work / "models" / "hf" / "vit-mae-base")
    fake_keras_folder(work / "models" / "clip_vit_base_patch16")
    before = _snapshot(work)
    assert paper.main(["--dry-run", "embed@clip"]) == 0
    out = capsys.readouterr().out
    assert ("exp run -S backbones.dinov2.weights=models/dinov2_base "
            "-S backbones.dinov2.image_size=224") in out.replace("'", "").replace('"', '')
    assert out.rstrip().endswith("embed@clip")
    assert _snapshot(work) == before


def test_set_replaces_a_folder_and_random_is_refused(work, capsys):
    shutil.copytree(FIXTURES / "dinov2", work / "elsewhere")
    rc = paper.main(["--dry-run", "--set", "backbones.dinov2.weights=elsewhere",
                     "--set", "backbones.clip.weights=random"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "backbones.dinov2.weights" not in err
    assert "backbones.clip.weights: 'random' is the untrained demo" in err
    assert "backbones.mae.weights: folder" in err


def test_preset_names_are_probed_and_an_offline_probe_names_the_key(work, capsys, monkeypatch):
    def offline(source, key, timeout=None):
        raise weights_mod.WeightsError(f"{key}: preset {source.location!r} did not answer")

    monkeypatch.setattr(weights_mod, "fetch_remote_config", offline)
    rc = paper.main(["--set", "backbones.dinov2.weights=dinov2_base"])
    assert rc == 2
    assert "backbones.dinov2.weights: preset 'dinov2_base' did not answer" in (
        capsys.readouterr().err)


def test_overlay_keys_must_exist_in_params():
    with pytest.raises(ParamsError, match=r"backbones\.dinov2\.weight: not a key"):
        paper.apply_overlay({"backbones": {"dinov2": {"weights": "random"}}},
                            {"backbones.dinov2.weight": "x"})
    with pytest.raises(ParamsError, match="is a section"):
        paper.apply_overlay({"backbones": {"dinov2": {"weights": "random"}}},
                            {"backbones.dinov2": "x"})


# --- a real run, tiny -------------------------------------------------------------------------
TINY = {
    "demo": {"targets_per_scene": 6, "width": 800, "height": 600, "n_targets": 24},
}


@pytest.mark.slow
def test_make_paper_runs_with_tiny_local_weights(repo_root, tmp_path):
    from tgmatl.config import BackboneParams
    from tgmatl.embedding.backbones import load_embedder
    from tgmatl.params import parse_section

    work = copy_repo(repo_root, tmp_path / "repo")
    params = yaml.safe_load((work / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    tiny = work / "models" / "tiny"
    shutil.copytree(FIXTURES / "dinov2", tiny / "dinov2")
    shutil.copytree(FIXTURES / "mae_pretraining", tiny / "mae")
    clip = parse_section(BackboneParams, {
        "family": "clip", "weights": "random", "image_size": 32, "pooling": "cls",
        "projected": True, "random": {"patch_size": 8, "hidden_dim": 32, "num_layers": 1,
                                      "num_heads": 2, "mlp_dim": 64}}, "backbones.clip")
    load_embedder(clip, "clip", seed=0).encoder.preset_model.save_to_preset(str(tiny / "clip"))
    overlay = {"backbones": {
        "dinov2": {"weights": "models/tiny/dinov2", "image_size": 28},
        "mae": {"weights": "models/tiny/mae", "image_size": 32},
        "clip": {"weights": "models/tiny/clip", "image_size": 32},
    }}
    (work / "tiny.paper.yaml").write_text(yaml.safe_dump(overlay))
    # the committed dvc.lock names outputs (plots, results) whose cache this copy lacks: a run of
    # a few targets would fail collecting them
    (work / "dvc.lock").unlink(missing_ok=True)

    env = dvc_env(work)
    commit_all(work, env)
    # two stages suffice: one Hugging Face folder, one keras-hub folder (loading each kind of
    # folder is tested in test_backbones); every overlay value must reach params.yaml
    targets = ["embed@mae", "embed@clip"]
    r = subprocess.run([sys.executable, "-m", "tgmatl.embedding.paper", "--overlay",
                        "tiny.paper.yaml", *targets], cwd=work, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    applied = yaml.safe_load((work / "params.yaml").read_text())["backbones"]
    for name, values in overlay["backbones"].items():
        assert {k: applied[name][k] for k in values} == values
        if f"embed@{name}" not in targets:
            continue
        meta = {k.decode(): v.decode() for k, v in
                pq.read_schema(work / "data" / "embeddings" / f"{name}.parquet").metadata.items()}
        assert meta["weights"] == values["weights"] and meta["untrained"] == "false"
        assert meta["image_size"] == str(values["image_size"])
