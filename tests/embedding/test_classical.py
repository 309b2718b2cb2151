"""`family: classical`: hand-crafted descriptors through stage `embed` (an offline baseline)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tgmatl.config import BackboneParams, EmbedParams
from tgmatl.embedding.extraction import embed_samples, read_embeddings
from tgmatl.errors import InputError
from tgmatl.params import ParamsError, parse_section

REPO = Path(__file__).resolve().parents[2]
N = 16


def classical(**over) -> BackboneParams:
    return parse_section(BackboneParams, {"family": "classical", "image_size": 64, "components": 8,
                                          **over},
                         "backbones.hand")


def embed_params(bands: str = "rgb") -> EmbedParams:
    raw = {"backbones": ["hand"], "batch_size": 4, "precision": "float32", "bands": bands,
           "resize": "stretch", "row_group_size": 5, "devices": "auto"}
    return parse_section(EmbedParams, raw, "embed")


def _image(cls: int, size: int, side: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Grass-green window with a centred animal: class 0 a pale square, class 1 a dark bar."""
    rng = np.random.default_rng(size * 7 + cls)
    img = np.empty((side, side, 3), np.uint8)
    img[:] = (70, 110, 40)
    img = np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    c, h = side // 2, size // 2
    if cls == 0:
        img[c - h:c + h, c - h:c + h] = (235, 230, 220)
    else:
        img[c - h // 3:c + h // 3, c - h:c + h] = (40, 25, 15)
    thermal = (img.mean(axis=-1) * 0.5 + 60).astype(np.uint8)
    return img, thermal


def write_samples(root: Path, side: int = 96) -> list[str]:
    (root / "images").mkdir(parents=True)
    (root / "thermal").mkdir()
    rows = []
    for i in range(N):
        cls, size = i % 2, 20 + 2 * i
        img, thermal = _image(cls, size, side)
        sid = f"s{i:05d}"
        Image.fromarray(img).save(root / "images" / f"{sid}.png")
        Image.fromarray(thermal).save(root / "thermal" / f"{sid}.png")
        c = side / 2
        rows.append({"sample_id": sid, "scene_id": f"scene_{i}", "image_path": f"images/{sid}.png",
                     "thermal_path": f"thermal/{sid}.png", "class_name": "ab"[cls],
                     "class_id": cls, "xmin": c - size / 2, "xmax": c + size / 2,
                     "ymin": c - size / 2, "ymax": c + size / 2, "tile_width": side,
                     "tile_height": side, "bands": 3})
    pd.DataFrame(rows).to_parquet(root / "samples.parquet", index=False)
    return [r["sample_id"] for r in rows]


@pytest.fixture()
def samples(tmp_path) -> Path:
    write_samples(tmp_path / "samples")
    return tmp_path / "samples"


def test_params_take_family_and_image_size_only():
    p = classical()
    assert (p.family, p.image_size, p.weights, p.pooling, p.random) == (
        "classical", 64, None, None, None)
    for key, value in (("weights", "random"), ("pooling", "cls"), ("projected", False),
                       ("random", {"patch_size": 8})):
        with pytest.raises(ParamsError, match=rf"backbones\.hand\.{key}: not used with family: "
                                              "classical"):
            classical(**{key: value})
    for size in (24, 60):
        with pytest.raises(ParamsError, match=r"backbones\.hand\.image_size"):
            classical(image_size=size)
    with pytest.raises(ParamsError, match=r"backbones\.hand\.image_size: missing"):
        parse_section(BackboneParams, {"family": "classical", "components": 8}, "backbones.hand")
    with pytest.raises(ParamsError, match=r"backbones\.hand\.components: missing"):
        parse_section(BackboneParams, {"family": "classical", "image_size": 64}, "backbones.hand")
    with pytest.raises(ParamsError, match=r"backbones\.hand\.components"):
        classical(components=0)
    with pytest.raises(ParamsError, match=r"backbones\.vit\.components: not used with family: "
                                          "dinov2"):
        parse_section(BackboneParams, {"family": "dinov2", "weights": "random", "image_size": 56,
                                       "pooling": "cls", "projected": False, "components": 8,
                                       "random": {"patch_size": 14, "hidden_dim": 8,
                                                  "num_layers": 1, "num_heads": 1,
                                                  "mlp_dim": 8}}, "backbones.vit")
    with pytest.raises(ParamsError, match=r"backbones\.vit\.weights: missing"):
        parse_section(BackboneParams, {"family": "dinov2", "image_size": 56, "pooling": "cls",
                                       "projected": False, "random": {}}, "backbones.vit")


def test_embeddings_are_deterministic_standardised_and_informative(samples, tmp_path):
    out = tmp_path / "a.parquet"
    embed_samples(samples, out, "hand", classical(), embed_params(), 0, progress=False)
    ids, x, meta = read_embeddings(out)
    assert ids.tolist() == [f"s{i:05d}" for i in range(N)]
    assert np.isfinite(x).all() and x.dtype == np.float32
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-5)
    assert meta["family"] == "classical" and meta["not_a_vit"] == "true"
    assert meta["offline_baseline"] == "true" and meta["label"] == "not a ViT: offline baseline"
    assert meta["untrained"] == "false" and int(meta["dim"]) == x.shape[1] == 8
    assert int(meta["descriptor_dim"]) > 8 and 0 < float(meta["variance_kept"]) < 1
    again = tmp_path / "b.parquet"
    embed_samples(samples, again, "hand", classical(), embed_params(), 0, progress=False)
    np.testing.assert_array_equal(read_embeddings(again)[1], x)
    # the class and the box size are in the vectors: nearest neighbour, and a linear fit
    y = np.arange(N) % 2
    d = ((x[:, None] - x[None]) ** 2).sum(-1) + np.eye(N) * 1e9
    assert (y[d.argmin(axis=1)] == y).mean() >= 0.9
    size = 20 + 2 * np.arange(N, dtype=float)
    a = np.c_[x, y, np.ones(N)]
    fit = a @ np.linalg.lstsq(a, size, rcond=None)[0]
    assert np.corrcoef(fit, size)[0, 1] > 0.9


def test_every_band_it_gets(samples, tmp_path):
    rgb, both = tmp_path / "rgb.parquet", tmp_path / "both.parquet"
    embed_samples(samples, rgb, "hand", classical(), embed_params("rgb"), 0, progress=False)
    embed_samples(samples, both, "hand", classical(), embed_params("rgb+thermal"), 0,
                  progress=False)
    x, (_, y, meta) = read_embeddings(rgb)[1], read_embeddings(both)
    assert y.shape[1] > x.shape[1] and meta["views"] == "rgb,thermal"
    np.testing.assert_array_equal(y[:, : x.shape[1]], x)  # [rgb | thermal]


def test_an_image_too_small_names_the_sample(tmp_path):
    write_samples(tmp_path / "samples", side=24)
    with pytest.raises(InputError, match=r"sample s00000: .*24x24 px, too small"):
        embed_samples(tmp_path / "samples", tmp_path / "x.parquet", "hand", classical(),
                      embed_params(), 0, progress=False)
    assert not (tmp_path / "x.parquet").exists()


def test_stage_script_needs_no_tensorflow(samples, tmp_path):
    params = {"seed": 0, "embed": {**vars(embed_params()), "backbones": ["hand"]},
              "backbones": {"hand": {"family": "classical", "image_size": 64,
                                     "components": 8}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    check = (
        "import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n"
        "    runpy.run_path(sys.argv[0], run_name='__main__')\nfinally:\n"
        "    assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n"
    )
    out = tmp_path / "out.parquet"
    args = [str(REPO / "stages/embed.py"), "--backbone", "hand", "--samples", str(samples),
            "--out", str(out), "--params", str(tmp_path / "params.yaml")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", check, *args], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert read_embeddings(out)[2]["family"] == "classical"


def test_principal_axes_keep_distances_and_fix_signs():
    from tgmatl.embedding.backbones.classical import principal_axes

    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5)) @ rng.normal(size=(5, 40))  # rank 5 in 40 dimensions
    z, kept = principal_axes(x, 5)
    assert z.shape == (12, 5) and kept == pytest.approx(1.0)
    d = lambda a: ((a[:, None] - a[None]) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(d(z), d(x), rtol=1e-4, atol=1e-3)  # a rotation on the span
    z2, kept2 = principal_axes(x, 2)
    np.testing.assert_allclose(z2, z[:, :2], atol=1e-5)
    assert 0 < kept2 < 1
    # the sign of each axis does not depend on the data's sign convention: -x gives -z
    np.testing.assert_allclose(principal_axes(-x, 5)[0], -z, atol=1e-4)
    assert principal_axes(x, 100)[0].shape == (12, 12)  # no more axes than samples
