"""Backbones: random init, keras-hub preset folders, Hugging Face checkpoints, and the errors.

The Hugging Face fixtures (tests/fixtures/hf/) are tiny random DINOv2 / MAE checkpoints with
reference outputs from transformers in PyTorch, made once by scripts/make_hf_fixtures.py.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tgmatl.config import BackboneParams, backbone_section
from tgmatl.embedding.backbones import (
    FAMILIES,
    WeightsError,
    get_family,
    load_embedder,
    load_encoder,
)
from tgmatl.embedding.backbones import weights as weights_mod
from tgmatl.embedding.backbones.base import sincos_2d
from tgmatl.embedding.backbones.dinov2 import torch_bicubic
from tgmatl.params import ParamsError, parse_section

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf"
TINY = {"patch_size": 8, "hidden_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_dim": 64}


def params(family: str, **overrides) -> BackboneParams:
    raw = {
        "family": family,
        "weights": "random",
        "image_size": 32,
        "pooling": "cls",
        "projected": family == "clip",
        "random": dict(TINY),
        **overrides,
    }
    return parse_section(BackboneParams, raw, f"backbones.{family}")


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "reference.npz") as data:
        return {k: data[k] for k in data.files}


# --- random weights and keras-hub preset folders ----------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_random_backbone_roundtrips_through_a_preset_folder(family, tmp_path):
    p = params(family)
    embedder = load_embedder(p, family, seed=3)
    x = images(4, 32)
    before = embedder.model(x).numpy()
    assert before.shape == (4, 32) and np.isfinite(before).all()
    assert embedder.untrained and embedder.metadata["untrained"] == "true"

    folder = tmp_path / "preset"
    embedder.encoder.preset_model.save_to_preset(str(folder))
    assert {"config.json", "metadata.json", "model.weights.h5"} <= {
        f.name for f in folder.iterdir()
    }
    loaded = load_embedder(params(family, weights=str(folder)), family, seed=99)
    np.testing.assert_array_equal(loaded.model(x).numpy(), before)
    assert not loaded.untrained and loaded.metadata["untrained"] == "false"
    assert loaded.metadata["weights_kind"] == "keras-hub preset folder"


def test_random_weights_are_seeded():
    x = images(2, 32)
    a = load_embedder(params("dinov2"), "dinov2", seed=0).model(x).numpy()
    b = load_embedder(params("dinov2"), "dinov2", seed=0).model(x).numpy()
    c = load_embedder(params("dinov2"), "dinov2", seed=1).model(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_embedder_is_frozen():
    embedder = load_embedder(params("mae"), "mae", seed=0)
    assert not embedder.model.trainable_weights


def test_cls_mean_concatenates_cls_and_patch_mean():
    cls = load_embedder(params("dinov2"), "dinov2", seed=0)
    both = load_embedder(params("dinov2", pooling="cls_mean"), "dinov2", seed=0)
    x = images(3, 32)
    out = both.model(x).numpy()
    assert both.dim == 2 * cls.dim == out.shape[1]
    np.testing.assert_allclose(out[:, : cls.dim], cls.model(x).numpy(), rtol=1e-6, atol=1e-6)
    tokens = cls.encoder.backbone({"images": x}).numpy()
    np.testing.assert_allclose(out[:, cls.dim :], tokens[:, 1:].mean(axis=1), atol=1e-5)


def test_clip_projection_is_the_projected_cls_token():
    plain = load_embedder(params("clip", projected=False), "clip", seed=0)
    proj = load_embedder(params("clip", projected=True), "clip", seed=0)
    x = images(2, 32)
    kernel = proj.encoder.projection
    assert kernel is not None
    np.testing.assert_allclose(
        proj.model(x).numpy(), plain.model(x).numpy() @ kernel, rtol=1e-5, atol=1e-5
    )


def test_clip_vision_encoder_preset_has_no_projection(tmp_path):
    embedder = load_embedder(params("clip", projected=False), "clip", seed=0)
    embedder.encoder.backbone.save_to_preset(str(tmp_path / "vision"))  # no projection saved
    same = load_embedder(
        params("clip", projected=False, weights=str(tmp_path / "vision")), "clip", seed=0
    )
    x = images(2, 32)
    np.testing.assert_array_equal(same.model(x).numpy(), embedder.model(x).numpy())
    with pytest.raises(ValueError, match="projection"):
        load_embedder(params("clip", weights=str(tmp_path / "vision")), "clip", seed=0)


def test_mae_random_positions_are_maes_sincos(reference):
    # The random MAE uses MAE's fixed table; the fixture holds transformers' own (grid 4, dim 24).
    np.testing.assert_allclose(sincos_2d(4, 24), reference["mae_sincos"], atol=1e-6)
    embedder = load_embedder(params("mae"), "mae", seed=0)
    table = embedder.encoder.backbone.get_layer("vit_patching_and_embedding")
    np.testing.assert_allclose(
        table.position_embedding.embeddings.numpy(), sincos_2d(4, 32), atol=1e-7
    )


def test_bfloat16_is_close_to_float32():
    x = images(4, 32)
    f32 = load_embedder(params("dinov2"), "dinov2", seed=0).model(x).numpy()
    bf16_model = load_embedder(params("dinov2"), "dinov2", seed=0, precision="bfloat16").model
    bf16 = bf16_model(x)
    assert bf16.numpy().dtype == np.float32
    rel = np.abs(bf16.numpy() - f32).max() / np.abs(f32).max()
    assert 0 < rel < 0.05


# --- Hugging Face checkpoints: parity with transformers (PyTorch) ------------------------------
HF_CASES = [
    ("dinov2", "dinov2", "dinov2", 28),
    ("dinov2", "dinov2_registers", "dinov2_registers", 28),
    ("dinov2", "dinov2", "dinov2_42", 42),  # positions interpolated (up)
    ("dinov2", "dinov2", "dinov2_14", 14),  # positions interpolated (down)
    ("dinov2", "dinov2_registers", "dinov2_registers_42", 42),
    ("mae", "mae_pretraining", "mae_pretraining", 32),  # ViTMAEForPreTraining: vit.* + decoder
    ("mae", "mae_encoder", "mae_encoder", 32),  # bare ViTMAEModel: no vit. prefix
]


@pytest.mark.parametrize("pooling", ["cls", "cls_mean"])
@pytest.mark.parametrize(("family", "folder", "case", "size"), HF_CASES)
def test_hf_checkpoint_matches_transformers(reference, family, folder, case, size, pooling):
    p = params(family, weights=str(FIXTURES / folder), image_size=size, pooling=pooling)
    embedder = load_embedder(p, folder, seed=0)
    assert embedder.metadata["weights_kind"] == "Hugging Face checkpoint folder"
    out = embedder.model(reference[f"{case}/images"].astype(np.float32)).numpy()
    expected = reference[f"{case}/{pooling}"]
    rel = np.abs(out - expected).max() / np.abs(expected).max()
    assert rel <= 1e-5, f"relative error {rel:.2e}"


def test_torch_bicubic_matches_pytorch_values():
    # Values printed by torch 2.13: F.interpolate(x, size=(1, n), mode="bicubic",
    # align_corners=False) for x = [[[[0, 1]]]] (up, n=4) and [[[[0, 1, 4, 2, 5]]]] (down, n=3).
    up = torch_bicubic(np.array([[[0.0], [1.0]]], np.float32), (1, 4))[0, :, 0]
    np.testing.assert_allclose(up, [-0.10546875, 0.2265625, 0.7734375, 1.10546875], atol=1e-6)
    row = np.array([[[0.0], [1.0], [4.0], [2.0], [5.0]]], np.float32)
    down = torch_bicubic(row, (1, 3))[0, :, 0]
    # torch computes in float32 (exact: 4/27, 4, 71/18)
    np.testing.assert_allclose(down, [0.1481490135, 4.0, 3.9444427490], atol=2e-6)


# --- errors -----------------------------------------------------------------------------------
def test_unknown_family_is_rejected_with_its_key():
    with pytest.raises(ParamsError, match=r"backbones\.x\.family"):
        parse_section(BackboneParams, {**params_raw("dinov2"), "family": "resnet"}, "backbones.x")
    with pytest.raises(ParamsError, match="unknown backbone family 'resnet'"):
        get_family("resnet")
    with pytest.raises(ParamsError, match=r"backbones\.nope"):
        backbone_section({"backbones": {}}, "nope")


def test_no_encoder_is_built_for_a_precomputed_backbone():
    pre = parse_section(BackboneParams, {"family": "precomputed", "weights": "x.npy"},
                        "backbones.pre")
    with pytest.raises(ParamsError, match=r"backbones\.pre\.family: precomputed has no encoder"):
        load_encoder(pre, "backbones.pre", 0)
    hand = parse_section(BackboneParams, {"family": "classical", "image_size": 64, "components": 8},
                         "backbones.hand")
    with pytest.raises(ParamsError, match=r"backbones\.hand\.family: classical has no encoder"):
        load_encoder(hand, "backbones.hand", 0)


def params_raw(family: str) -> dict:
    return {
        "family": family,
        "weights": "random",
        "image_size": 32,
        "pooling": "cls",
        "projected": False,
        "random": dict(TINY),
    }


def test_projected_only_for_clip():
    with pytest.raises(ParamsError, match=r"backbones\.dinov2\.projected"):
        params("dinov2", projected=True)
    with pytest.raises(ParamsError, match=r"backbones\.clip\.pooling"):
        params("clip", projected=True, pooling="cls_mean")
    with pytest.raises(ParamsError, match=r"backbones\.mae\.image_size"):
        params("mae", image_size=36)


def test_missing_local_folder_names_key_and_layouts(tmp_path):
    with pytest.raises(WeightsError, match=r"backbones\.dinov2\.weights.*not found") as info:
        load_embedder(params("dinov2", weights=str(tmp_path / "nowhere")), "dinov2", seed=0)
    assert "model.safetensors" in str(info.value) and "save_to_preset" in str(info.value)


def test_folder_without_weights_is_an_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "dinov2"}')
    with pytest.raises(WeightsError, match="no model.safetensors"):
        load_embedder(params("dinov2", weights=str(tmp_path)), "dinov2", seed=0)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match="neither a keras-hub preset config"):
        load_embedder(params("dinov2", weights=str(tmp_path)), "dinov2", seed=0)


def test_unknown_name_is_neither_folder_nor_preset():
    with pytest.raises(WeightsError, match=r"backbones\.mae\.weights: 'dinov2_base' is neither"):
        load_embedder(params("mae", weights="dinov2_base"), "mae", seed=0)


def test_wrong_family_for_checkpoint():
    with pytest.raises(WeightsError, match="reads model types"):
        load_embedder(params("dinov2", weights=str(FIXTURES / "mae_encoder")), "dinov2", seed=0)
    with pytest.raises(WeightsError, match="not supported for family 'clip'"):
        load_embedder(params("clip", weights=str(FIXTURES / "mae_encoder")), "clip", seed=0)


def test_wrong_class_in_keras_preset_folder(tmp_path):
    embedder = load_embedder(params("dinov2"), "dinov2", seed=0)
    embedder.encoder.preset_model.save_to_preset(str(tmp_path / "dino"))
    with pytest.raises(WeightsError, match=r"backbones\.mae\.weights: cannot load"):
        load_embedder(params("mae", weights=str(tmp_path / "dino")), "mae", seed=0)


def test_fixed_position_checkpoint_at_another_size_names_image_size():
    p = params("mae", weights=str(FIXTURES / "mae_encoder"), image_size=64)
    with pytest.raises(WeightsError, match=r"backbones\.mae\.image_size: 64.*set image_size: 32"):
        load_embedder(p, "mae", seed=0)


def _offline() -> bool:
    try:
        socket.getaddrinfo("api.kaggle.com", 443)
    except OSError:
        return True
    return False


def test_preset_name_offline_fails_fast_with_advice(monkeypatch, tmp_path):
    """The real path: a built-in preset with no network. Skipped where a hub is reachable."""
    if not _offline():
        pytest.skip("network reachable here: the offline failure cannot be exercised for real")
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"backbones\.dinov2\.weights: cannot fetch preset") as e:
        load_embedder(params("dinov2", weights="dinov2_base", image_size=224), "dinov2", seed=0)
    assert time.perf_counter() - start < weights_mod.PROBE_TIMEOUT_S
    assert "local folder" in str(e.value)


def test_hung_download_times_out(monkeypatch):
    import keras_hub.src.utils.preset_utils as preset_utils

    def hang(preset, path):
        time.sleep(30)

    monkeypatch.setattr(preset_utils, "get_file", hang)
    monkeypatch.setattr(weights_mod, "PROBE_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=r"backbones\.clip\.weights: preset .* did not answer"):
        load_embedder(params("clip", weights="clip_vit_base_patch16"), "clip", seed=0)
    assert time.perf_counter() - start < 5


def test_connection_error_is_translated(monkeypatch):
    import keras_hub.src.utils.preset_utils as preset_utils

    def refuse(preset, path):
        raise ConnectionError("Failed to resolve 'api.kaggle.com'")

    monkeypatch.setattr(preset_utils, "get_file", refuse)
    with pytest.raises(
        WeightsError, match=r"cannot fetch preset 'hf://org/model'.*ConnectionError"
    ):
        load_embedder(params("mae", weights="hf://org/model"), "mae", seed=0)
