"""Stage `embed`: preprocessing, bands, the Parquet output, streaming memory, errors."""

from __future__ import annotations

import importlib.util
import io
import threading
import time
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from PIL import Image

from tgmatl.config import BackboneParams, EmbedParams
from tgmatl.embedding.backbones import load_embedder
from tgmatl.embedding.backbones import preprocessing as pre
from tgmatl.embedding.extraction import extract, read_embeddings, read_views
from tgmatl.errors import InputError
from tgmatl.params import parse_section

REPO = Path(__file__).resolve().parents[2]
TINY = {"patch_size": 8, "hidden_dim": 32, "num_layers": 1, "num_heads": 2, "mlp_dim": 64}


def backbone(family: str = "dinov2", size: int = 32, **kw) -> BackboneParams:
    raw = {
        "family": family,
        "weights": "random",
        "image_size": size,
        "pooling": "cls",
        "projected": False,
        "random": dict(TINY),
        **kw,
    }
    return parse_section(BackboneParams, raw, f"backbones.{family}")


def embed_params(**kw) -> EmbedParams:
    raw = {
        "backbones": ["dinov2"],
        "batch_size": 3,
        "precision": "float32",
        "bands": "rgb",
        "resize": "stretch",
        "row_group_size": 4,
        "devices": "auto",
        **kw,
    }
    return parse_section(EmbedParams, raw, "embed")


def write_samples(
    folder: Path, n: int, *, bands: int = 3, thermal: bool = True, size=(20, 40), seed: int = 0
) -> Path:
    """A samples folder per the data contract: PNGs + samples.parquet (sorted by sample_id)."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        h, w = (int(v) for v in rng.integers(size[0], size[1], 2))
        sid = f"s{i:05d}"
        shape = (h, w, 3) if bands == 3 else (h, w)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img/{sid}.png")
        therm = None
        if thermal:
            therm = f"img/{sid}_thermal.png"
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(folder / therm)
        rows.append(
            {
                "sample_id": sid,
                "scene_id": "scene0",
                "image_path": f"img/{sid}.png",
                "thermal_path": therm,
                "class_name": "cow",
                "class_id": 0,
                "xmin": 1.0,
                "xmax": 5.0,
                "ymin": 1.0,
                "ymax": 5.0,
                "tile_width": w,
                "tile_height": h,
                "bands": bands,
            }
        )
    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    table = table.cast(table.schema.set(3, pa.field("thermal_path", pa.string())))
    pq.write_table(table, folder / "samples.parquet")
    return folder


@pytest.fixture(scope="module")
def embedder():
    return load_embedder(backbone(), "dinov2", seed=0)


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    return write_samples(tmp_path_factory.mktemp("samples"), 10)


def run(embedder, samples_dir, out, bands="rgb", resize="stretch", batch=3, rows=4):
    views = read_views(samples_dir, bands)
    extract(embedder, views, out, resize, batch, rows, metadata={"bands": bands}, progress=False)
    return read_embeddings(out)


# --- output -----------------------------------------------------------------------------------
def test_parquet_schema_metadata_and_row_groups(embedder, samples, tmp_path):
    out = tmp_path / "e.parquet"
    ids, emb, meta = run(embedder, samples, out)
    schema = pq.read_schema(out)
    assert schema.field("sample_id").type == pa.string()
    assert schema.field("embedding").type == pa.list_(pa.float32(), 32)
    assert list(ids) == [f"s{i:05d}" for i in range(10)]
    assert emb.shape == (10, 32) and emb.dtype == np.float32 and np.isfinite(emb).all()
    for key, value in {
        "family": "dinov2",
        "weights": "random",
        "untrained": "true",
        "image_size": "32",
        "pooling": "cls",
        "precision": "float32",
        "bands": "rgb",
        "resize": "stretch",
        "dim": "32",
        "n_samples": "10",
    }.items():
        assert meta[key] == value, key
    assert meta["keras_hub_version"]
    meta_file = pq.ParquetFile(out).metadata
    sizes = [meta_file.row_group(i).num_rows for i in range(meta_file.num_row_groups)]
    assert sizes == [4, 4, 2]
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed


def test_embeddings_equal_model_on_preprocessed_images(embedder, samples, tmp_path):
    ids, emb, _ = run(embedder, samples, tmp_path / "e.parquet", resize="pad")
    table = pq.read_table(samples / "samples.parquet").to_pandas()
    batch = []
    for path in table["image_path"]:
        img = np.asarray(Image.open(samples / path), dtype=np.float32) / 255.0
        batch.append(pre.preprocess(tf.constant(img), 32, "pad", embedder.mean, embedder.std))
    expected = embedder.model(tf.stack(batch)).numpy()
    np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)


def test_same_inputs_same_bytes(embedder, samples, tmp_path):
    _, a, _ = run(embedder, samples, tmp_path / "a.parquet")
    _, b, _ = run(embedder, samples, tmp_path / "b.parquet", batch=4)
    _, c, _ = run(embedder, samples, tmp_path / "c.parquet")
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # other batch size: same values


# --- preprocessing ----------------------------------------------------------------------------
def test_square_modes():
    img = tf.reshape(tf.range(4 * 8 * 3, dtype=tf.float32), (4, 8, 3)) + 1.0
    np.testing.assert_array_equal(pre.square(img, "stretch"), img)
    crop = pre.square(img, "crop").numpy()
    np.testing.assert_array_equal(crop, img.numpy()[:, 2:6])
    pad = pre.square(img, "pad").numpy()
    assert pad.shape == (8, 8, 3)
    assert not pad[:2].any() and not pad[6:].any()  # 0 = the mean colour after normalisation
    np.testing.assert_array_equal(pad[2:6], img.numpy())
    assert pre.preprocess(img, 16, "crop", pre.CLIP_MEAN, pre.CLIP_STD).shape == (16, 16, 3)


def test_decode_scales_8_and_16_bit_pngs():
    def png(arr):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        return buf.getvalue()

    eight = pre.decode_png(png(np.array([[0, 51, 255]], np.uint8))).numpy().ravel()
    np.testing.assert_allclose(eight, [0.0, 0.2, 1.0], atol=1e-7)
    sixteen = pre.decode_png(png(np.array([[0, 13107, 65535]], np.uint16))).numpy().ravel()
    np.testing.assert_allclose(sixteen, [0.0, 0.2, 1.0], atol=1e-7)
    gray = pre.to_three_channels(tf.constant([[[0.5]]])).numpy()
    np.testing.assert_array_equal(gray, [[[0.5, 0.5, 0.5]]])


def test_normalisation_uses_the_family_statistics():
    assert load_embedder(backbone("clip"), "clip", seed=0).mean == pre.CLIP_MEAN
    assert load_embedder(backbone("mae"), "mae", seed=0).std == pre.IMAGENET_STD


# --- bands ------------------------------------------------------------------------------------
def test_rgb_plus_thermal_concatenates_the_two_embeddings(embedder, samples, tmp_path):
    _, rgb, _ = run(embedder, samples, tmp_path / "rgb.parquet", bands="rgb")
    _, therm, _ = run(embedder, samples, tmp_path / "t.parquet", bands="thermal")
    _, both, meta = run(embedder, samples, tmp_path / "both.parquet", bands="rgb+thermal")
    assert both.shape == (10, 64) and meta["views"] == "rgb,thermal" and meta["dim"] == "64"
    np.testing.assert_allclose(both[:, :32], rgb, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both[:, 32:], therm, rtol=1e-5, atol=1e-5)
    assert np.abs(rgb - therm).max() > 1e-3


def test_single_band_survey(embedder, tmp_path):
    folder = write_samples(tmp_path / "hit", 3, bands=1, thermal=False)
    ids, emb, _ = run(embedder, folder, tmp_path / "t.parquet", bands="thermal")
    assert emb.shape == (3, 32)
    with pytest.raises(InputError, match=r"sample s00000 .*1 band\(s\).*embed\.bands: thermal"):
        read_views(folder, "rgb")
    with pytest.raises(InputError, match=r"sample s00000 .*embed\.bands: rgb\+thermal"):
        read_views(folder, "rgb+thermal")


def test_thermal_requested_without_thermal(tmp_path):
    folder = write_samples(tmp_path / "rgb_only", 2, thermal=False)
    with pytest.raises(InputError, match=r"sample s00000 .*no thermal band.*set embed\.bands: rgb"):
        read_views(folder, "thermal")
    with pytest.raises(InputError, match=r"sample s00000 .*no thermal_path"):
        read_views(folder, "rgb+thermal")


def test_file_band_count_disagreeing_with_table(embedder, tmp_path):
    folder = write_samples(tmp_path / "bad", 5)
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(folder / "img/s00003.png")
    out = tmp_path / "e.parquet"
    with pytest.raises(InputError, match=r"sample s00003: .*s00003\.png has 1 band\(s\) where 3"):
        run(embedder, folder, out)
    assert not out.exists() and not list(tmp_path.glob(".e.parquet*"))


def test_missing_image_and_table(tmp_path):
    folder = write_samples(tmp_path / "gone", 3)
    (folder / "img/s00001.png").unlink()
    with pytest.raises(InputError, match=r"sample s00001: image file .*s00001\.png not found"):
        read_views(folder, "rgb")
    with pytest.raises(InputError, match="samples table not found"):
        read_views(tmp_path / "nothing", "rgb")


# --- the stage --------------------------------------------------------------------------------
def _stage():
    spec = importlib.util.spec_from_file_location("embed_stage", REPO / "stages" / "embed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stage_script(samples, tmp_path, capsys):
    from tgmatl import cli

    stage = _stage()
    params = {
        "seed": 0,
        "embed": {**vars(embed_params()), "backbones": ["mae"]},
        "backbones": {"mae": {**{k: v for k, v in backbone("mae").__dict__.items()
                                if v is not None}, "random": dict(TINY)}},
    }
    out = tmp_path / "emb" / "mae.parquet"
    args = Namespace(backbone="mae", samples=str(samples), out=str(out), params="unused")
    stage.main(args, params)
    ids, emb, meta = read_embeddings(out)
    assert len(ids) == 10 and meta["backbone"] == "mae" and meta["untrained"] == "true"

    params["backbones"]["mae"]["weights"] = str(tmp_path / "no_such_folder")
    cli_params = tmp_path / "params.yaml"
    import yaml

    cli_params.write_text(yaml.safe_dump(params))
    args.params = str(cli_params)
    with pytest.raises(SystemExit) as exc:
        cli.run(stage.main, args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tgmatl: error: backbones.mae.weights: folder")


# --- memory -----------------------------------------------------------------------------------
def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.slow
def test_memory_stays_flat_over_thousands_of_images(tmp_path):
    """3000 PNGs through a 64 px model: all preprocessed images together would be 141 MiB."""
    folder = write_samples(tmp_path / "many", 3000, thermal=False, size=(32, 33))
    embedder = load_embedder(backbone("dinov2", size=64, pooling="cls_mean"), "dinov2", seed=0)
    views = read_views(folder, "rgb")
    # Warm up (trace, allocator pools) on a small run so the big run starts at steady state.
    small = read_views(write_samples(tmp_path / "few", 300, thermal=False, size=(32, 33)), "rgb")
    extract(embedder, small, tmp_path / "warm.parquet", "stretch", 64, 256, progress=False)

    samples_mb: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not done.is_set():
            samples_mb.append((time.perf_counter() - start, _rss_mb()))
            time.sleep(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        stats = extract(embedder, views, tmp_path / "e.parquet", "stretch", 64, 256, progress=False)
    finally:
        done.set()
        thread.join()
    assert stats["n_samples"] == 3000
    t_end = samples_mb[-1][0]
    early = max(mb for t, mb in samples_mb if t <= t_end / 4)
    late = max(mb for t, mb in samples_mb)
    assert late - early < 40, f"RSS grew {late - early:.0f} MiB (from {early:.0f} MiB)"
    ids, emb, _ = read_embeddings(tmp_path / "e.parquet")
    assert emb.shape == (3000, 64) and pq.ParquetFile(tmp_path / "e.parquet").num_row_groups == 12
