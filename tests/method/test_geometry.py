"""Box features, train-only min-max normalisation and discrete box labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgmatl.errors import InputError
from tgmatl.method.geometry import (
    FEATURES,
    BoxLabeler,
    MinMax,
    box_features,
    fit_geometry,
)


def boxes(wh, x0=10.0, y0=20.0) -> pd.DataFrame:
    wh = np.asarray(wh, np.float64)
    return pd.DataFrame({"xmin": x0, "xmax": x0 + wh[:, 0], "ymin": y0, "ymax": y0 + wh[:, 1]})


def test_feature_formulas():
    f = box_features(boxes([[4.0, 2.0], [2.0, 4.0], [3.0, 3.0]]), FEATURES)
    got = dict(zip(FEATURES, f.T, strict=True))
    np.testing.assert_allclose(got["width"], [4, 2, 3])
    np.testing.assert_allclose(got["height"], [2, 4, 3])
    np.testing.assert_allclose(got["area"], [8, 8, 9])
    # symmetric: a 4x2 and a 2x4 box deviate alike; a square deviates not at all
    np.testing.assert_allclose(got["squareness"], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(got["aspect"], [2.0, 0.5, 1.0])
    np.testing.assert_allclose(got["log_aspect"], [np.log(2), -np.log(2), 0.0])
    np.testing.assert_allclose(got["perimeter"], [12, 12, 12])
    np.testing.assert_allclose(got["diagonal"], [np.sqrt(20), np.sqrt(20), np.sqrt(18)])


def test_feature_order_and_unknown():
    f = box_features(boxes([[4.0, 2.0]]), ["squareness", "area"])
    np.testing.assert_allclose(f, [[0.5, 8.0]])
    with pytest.raises(ValueError, match="unknown geometry feature"):
        box_features(boxes([[4.0, 2.0]]), ["volume"])


def test_minmax_fitted_on_train_applied_clipped():
    train = np.array([[1.0, 10.0], [3.0, 30.0], [2.0, 20.0]])
    mm = MinMax.fit(train)
    np.testing.assert_allclose(mm.transform(train), [[0, 0], [1, 1], [0.5, 0.5]])
    other = np.array([[0.0, 40.0], [2.5, 15.0]])  # outside the training range on both sides
    np.testing.assert_allclose(mm.transform(other), [[0.0, 1.0], [0.75, 0.25]])


def test_minmax_constant_feature_is_zero():
    train = np.array([[5.0, 1.0], [5.0, 2.0]])
    mm = MinMax.fit(train)
    assert mm.constant.tolist() == [True, False]
    out = mm.transform(np.array([[5.0, 1.5], [7.0, 1.5], [1.0, 1.5]]))
    np.testing.assert_array_equal(out[:, 0], 0.0)
    np.testing.assert_allclose(out[:, 1], 0.5)
    assert np.all(np.isfinite(out))


def _three_clusters(seed=0, n=30):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.9, 0.8], [0.1, 0.1], [0.5, 0.2]])
    x = np.concatenate([c + 0.03 * rng.normal(size=(n, 2)) for c in centres])
    return np.clip(x, 0, 1)


def test_kmeans_labels_canonical_and_deterministic():
    x = _three_clusters()
    lab = BoxLabeler.fit(x, "kmeans", 3, seed=0)
    norms = np.linalg.norm(lab.centres, axis=1)
    assert np.all(np.diff(norms) > 0)  # label 0 nearest the origin
    z = lab.predict(x)
    # the cluster around (0.1, 0.1) is label 0, (0.5, 0.2) label 1, (0.9, 0.8) label 2
    assert set(z[30:60]) == {0} and set(z[60:]) == {1} and set(z[:30]) == {2}
    # the same training set in another row order gives the same labels
    perm = np.random.default_rng(1).permutation(len(x))
    again = BoxLabeler.fit(x[perm], "kmeans", 3, seed=0)
    np.testing.assert_allclose(again.centres, lab.centres, atol=1e-9)
    np.testing.assert_array_equal(again.predict(x), z)
    assert lab.k == 3 and z.dtype == np.int32


def test_kmeans_predicts_unseen_points():
    lab = BoxLabeler.fit(_three_clusters(), "kmeans", 3, seed=0)
    np.testing.assert_array_equal(lab.predict(np.array([[0.0, 0.0], [1.0, 1.0]])), [0, 2])


def test_kmeans_too_few_distinct_boxes():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(InputError, match="k=3 but the training samples hold only 2"):
        BoxLabeler.fit(x, "kmeans", 3, seed=0)


def test_quantile_labels_on_mean_feature():
    x = np.column_stack([np.linspace(0, 1, 9), np.linspace(0, 1, 9)])
    lab = BoxLabeler.fit(x, "quantile", 3, seed=0)
    np.testing.assert_allclose(lab.edges, [1 / 3, 2 / 3])
    np.testing.assert_array_equal(lab.predict(x), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert lab.k == 3
    # the mean of the features decides: (1, 0) has mean 0.5
    np.testing.assert_array_equal(lab.predict(np.array([[1.0, 0.0], [2.0, 2.0]])), [1, 2])
    with pytest.raises(ValueError, match="kmeans|quantile"):
        BoxLabeler.fit(x, "median", 3, seed=0)


def test_fit_geometry_uses_training_boxes_only():
    train = boxes([[2.0, 2.0], [4.0, 2.0], [6.0, 2.0], [8.0, 2.0]])
    other = boxes([[10.0, 2.0], [1.0, 1.0]])
    fitted = fit_geometry(train, ["area", "squareness"], "kmeans", 2, seed=0)
    np.testing.assert_allclose(fitted.minmax.lo, [4.0, 0.0])
    np.testing.assert_allclose(fitted.minmax.hi, [16.0, 0.75])
    xn = fitted.normalise(other)
    # area 20 and squareness 0.8 lie above the training max: clipped to 1
    np.testing.assert_allclose(xn, [[1.0, 1.0], [0.0, 0.0]])
    assert fitted.labels(other).tolist() == [1, 0]


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"features": ["area", "area"]}, "geometry.features"),
        ({"features": []}, "geometry.features"),
        ({"features": ["volume"]}, r"geometry.features\[0\]"),
        ({"box_label": {"method": "kmeans", "k": 1}}, "geometry.box_label.k"),
        ({"box_label": {"method": "dbscan", "k": 3}}, "geometry.box_label.method"),
    ],
)
def test_params_errors_name_the_key(raw, key):
    from tgmatl.config import GeometryParams
    from tgmatl.params import ParamsError, parse_section

    base = {"features": ["area", "squareness"], "box_label": {"method": "kmeans", "k": 3}}
    with pytest.raises(ParamsError, match=key):
        parse_section(GeometryParams, {**base, **raw}, "geometry")
