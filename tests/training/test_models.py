"""Projection head, task heads and their seeded initialisation."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tgmatl.training import models  # noqa: E402


def test_projection_head_shapes_and_unit_norm():
    m = models.projection_head(12, (32, 8))
    dense = [layer for layer in m.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [32, 8]
    assert dense[0].activation.__name__ == "relu" and dense[1].activation.__name__ == "linear"
    m.set_weights(models.init_weights(m, np.random.default_rng(0)))
    out = np.asarray(m(np.random.default_rng(1).normal(size=(5, 12)).astype("float32")))
    assert out.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_task_heads_linear_or_hidden():
    linear = models.classification_head(6, 3, hidden=0)
    assert [type(layer).__name__ for layer in linear.layers[1:]] == ["Standardize", "Dense"]
    deep = models.regression_head(6, 2, hidden=4)
    names = [layer.name for layer in deep.layers[1:]]
    assert names == ["standardize", "hidden", "out"]
    assert deep.output_shape == (None, 2)


def test_init_weights_seeded_glorot_and_standardisation():
    m = models.regression_head(4, 2, hidden=3)
    x = np.random.default_rng(0).normal(loc=5.0, scale=2.0, size=(50, 4))
    x[:, 3] = 7.0  # constant column: scale 1, not a division by zero
    a = models.init_weights(m, np.random.default_rng(42), x)
    b = models.init_weights(m, np.random.default_rng(42), x)
    c = models.init_weights(m, np.random.default_rng(43), x)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])
    mean, inv = a[0], a[1]
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(inv[:3], 1.0 / x[:, :3].std(axis=0), rtol=1e-5)
    assert inv[3] == 1.0
    kernel = a[2]  # hidden kernel 4x3: Glorot uniform bound sqrt(6 / 7)
    assert kernel.shape == (4, 3) and np.abs(kernel).max() <= np.sqrt(6 / 7)
    with pytest.raises(ValueError, match="x_train"):
        models.init_weights(m, np.random.default_rng(0))


def test_out_bias_starts_as_constant_predictor():
    m = models.regression_head(4, 2, hidden=0)
    x = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    m.set_weights(models.init_weights(m, np.random.default_rng(0), x, out_bias=[0.25, 0.75]))
    pred = np.asarray(m(x))
    np.testing.assert_allclose(pred, np.tile([0.25, 0.75], (20, 1)), atol=1e-6)


def test_weights_roundtrip(tmp_path):
    m = models.projection_head(5, (7, 3))
    w = models.init_weights(m, np.random.default_rng(3))
    m.set_weights(w)
    m.save_weights(tmp_path / "p.weights.h5")
    n = models.projection_head(5, (7, 3))
    n.load_weights(tmp_path / "p.weights.h5")
    assert all(np.array_equal(u, v) for u, v in zip(w, n.get_weights(), strict=True))


def test_softmax_rows():
    p = models.softmax(np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[1, 0] == pytest.approx(1.0)
