"""``embed.devices``: which devices it selects, how it is validated, and the mirrored run.

The mirrored test runs the real ``tf.distribute.MirroredStrategy`` path over two logical CPU
devices. Those must be configured before TensorFlow initialises its devices, so it runs in a fresh
Python process; this module itself never starts TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tgmatl.config import EmbedParams
from tgmatl.embedding.extraction import CPU, read_embeddings, resolve_devices
from tgmatl.params import ParamsError, parse_section

TESTS = Path(__file__).resolve().parent
GPUS = ["/device:GPU:0", "/device:GPU:1", "/device:GPU:2"]


# --- resolve_devices --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "gpus", "expected"),
    [
        ("auto", GPUS, GPUS),
        ("auto", [], [CPU]),
        ("cpu", GPUS, [CPU]),
        ("cpu", [], [CPU]),
        ("all", GPUS, GPUS),
        (2, GPUS, GPUS[:2]),
        (3, GPUS, GPUS),
        (1, GPUS[:1], GPUS[:1]),
    ],
)
def test_resolve_devices(spec, gpus, expected):
    assert resolve_devices(spec, gpus=gpus) == expected


@pytest.mark.parametrize(
    ("spec", "gpus", "pattern"),
    [
        ("all", [], r"embed\.devices: all asks for GPUs and TensorFlow sees none"),
        (1, [], r"embed\.devices: 1 asks for GPUs and TensorFlow sees none"),
        (4, GPUS, r"embed\.devices: 4 GPUs requested, only 3 visible"),
        (0, GPUS, r"embed\.devices: 0 is not auto, cpu, all or a GPU count"),
        ("gpu", GPUS, r"embed\.devices: 'gpu' is not auto, cpu, all"),
        (True, GPUS, r"embed\.devices: True is not auto"),
    ],
)
def test_resolve_devices_refuses_what_is_not_there(spec, gpus, pattern):
    with pytest.raises(ParamsError, match=pattern):
        resolve_devices(spec, gpus=gpus)


# --- params -----------------------------------------------------------------------------------
def _embed(devices) -> EmbedParams:
    raw = {"backbones": ["dinov2"], "batch_size": 4, "precision": "float32", "bands": "rgb",
           "resize": "stretch", "row_group_size": 4, "devices": devices}
    return parse_section(EmbedParams, raw, "embed")


def test_params_accept_words_and_counts():
    assert [_embed(v).devices for v in ("auto", "cpu", "all", 1, 8)] == ["auto", "cpu", "all", 1, 8]


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("gpu", r"embed\.devices: 'gpu' is not accepted \('gpu' is not one of auto\|cpu\|all; "
                r"expected an integer"),
        (0, r"embed\.devices: 0 out of range, must be >= 1"),
        (-2, r"embed\.devices: -2 out of range"),
        (1.5, r"embed\.devices: 1\.5 is not accepted"),
        (True, r"embed\.devices: True is not accepted"),
        ("2", r"embed\.devices: '2' is not accepted"),
    ],
)
def test_params_refuse_other_values(value, pattern):
    with pytest.raises(ParamsError, match=pattern):
        _embed(value)


def test_missing_devices_key_is_named():
    raw = {"backbones": ["dinov2"], "batch_size": 4, "precision": "float32", "bands": "rgb",
           "resize": "stretch", "row_group_size": 4}
    with pytest.raises(ParamsError, match=r"embed\.devices: missing"):
        parse_section(EmbedParams, raw, "embed")


def test_devices_is_not_a_dvc_param_of_embed(repo_root):
    """Another machine's GPUs must not rerun embed (the outputs do not depend on them)."""
    import yaml

    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["embed"]["do"]
    assert "embed.batch_size" in stage["params"]
    assert "embed.devices" not in stage["params"]


# --- the mirrored run -------------------------------------------------------------------------
# Cases: (samples, global batch, bands, precision). 21 with batch 4, two views (rgb+thermal):
# batches split 2 + 2 across the replicas and the last one (1) leaves replica 1 empty; 7 with
# batch 4 in bfloat16: the last batch (3) splits 2 + 1.
CASES = [(21, 4, "rgb+thermal", "float32"), (7, 4, "rgb", "bfloat16")]

RUN = r"""
import json, sys
from pathlib import Path
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
sys.path.insert(0, sys.argv[1])
from test_extraction import backbone, embed_params, write_samples
from tgmatl.embedding.extraction import embed_samples

tmp = Path(sys.argv[2])
for n, batch, bands, precision in json.loads(sys.argv[3]):
    folder = tmp / f"samples{n}"
    if not folder.exists():
        write_samples(folder, n)
    params = embed_params(batch_size=batch, bands=bands, precision=precision, row_group_size=5)
    for devices in (["/cpu:0"], ["/cpu:0", "/cpu:1"]):
        out = tmp / f"{n}-{bands}-{precision}-{len(devices)}.parquet"
        embed_samples(folder, out, "dinov2", backbone(), params, 0, False, devices=devices)
print("ran", len(tf.config.list_logical_devices("CPU")), "logical CPUs")
"""


def test_mirrored_over_two_devices_equals_one_device(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3",
           "KERAS_BACKEND": "tensorflow"}
    proc = subprocess.run(
        [sys.executable, "-c", RUN, str(TESTS), str(tmp_path), json.dumps(CASES)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ran 2 logical CPUs" in proc.stdout
    for n, _, bands, precision in CASES:
        stem = tmp_path / f"{n}-{bands}-{precision}"
        ids1, emb1, meta1 = read_embeddings(f"{stem}-1.parquet")
        ids2, emb2, meta2 = read_embeddings(f"{stem}-2.parquet")
        assert (meta1["replicas"], meta2["replicas"]) == ("1", "2")
        assert list(ids1) == [f"s{i:05d}" for i in range(n)]
        assert list(ids2) == list(ids1)  # samples.parquet order, last partial batch included
        width = 64 if bands == "rgb+thermal" else 32
        assert emb2.shape == emb1.shape == (n, width)
        assert np.abs(emb1).max() > 0 and len(np.unique(emb1[:, 0])) == n  # distinct rows
        np.testing.assert_allclose(emb2, emb1, rtol=1e-5, atol=1e-5 * np.abs(emb1).max())
