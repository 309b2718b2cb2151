"""Mutual information, Eq. 5 scores, Table I statistics and the per-fold scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgmatl.config import BoxLabelParams, GeometryParams, MIParams
from tgmatl.mi import feature_mi, roles, sample_scores, score_folds, score_stats, table_one

GEOM = GeometryParams(features=("area", "squareness"), box_label=BoxLabelParams("kmeans", 3))
MI = MIParams(n_neighbors=3)


def planted(n=90, seed=0):
    """Feature 0 determines the class (three separated ranges); feature 1 is pure noise."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    informative = y / 3 + rng.uniform(0, 0.25, size=n)
    noise = rng.uniform(0, 1, size=n)
    return np.column_stack([noise, informative]), y


def test_mi_repeatable():
    x, y = planted()
    a = feature_mi(x, y, 3, seed=7)
    b = feature_mi(x, y, 3, seed=7)
    np.testing.assert_array_equal(a, b)


def test_mi_informative_feature_larger():
    x, y = planted()
    mi = feature_mi(x, y, 3, seed=0)
    assert mi[1] > 0.8  # ~ln 3 = 1.10 nats for a feature that determines one of 3 classes
    assert mi[0] < 0.2
    assert mi[1] > 5 * mi[0]


def test_mi_constant_feature_is_zero():
    x, y = planted()
    x[:, 0] = 0.0
    assert feature_mi(x, y, 3, seed=0)[0] == 0.0


def test_scores_eq5_by_hand():
    xn = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    mi = np.array([0.2, 0.6])
    # s = 0.2·x1 + 0.6·x2
    np.testing.assert_allclose(sample_scores(xn, mi), [0.6, 0.4, 0.2])


def test_score_stats():
    stats = score_stats(np.array([1.0, 3.0, 2.0, 5.0]), ["cow", "cow", "cow", "deer"])
    assert stats["cow"] == {"count": 3, "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert stats["deer"] == {"count": 1, "mean": 5.0, "std": None, "min": 5.0, "max": 5.0}


def make_samples(n=60, seed=0):
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % 3
    w = rng.uniform(5, 30, n) + 10 * cls
    h = rng.uniform(5, 30, n)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "class_id": cls,
            "class_name": np.array(["cow", "deer", "horse"])[cls],
            "xmin": 1.0,
            "xmax": 1.0 + w,
            "ymin": 2.0,
            "ymax": 2.0 + h,
        }
    )


def make_split(n=60, folds=3):
    test = np.arange(n) % 5 == 0
    fold = np.where(test, -1, np.arange(n) % folds).astype(np.int32)
    return pd.DataFrame({"sample_id": [f"s{i:05d}" for i in range(n)], "test": test, "fold": fold})


def test_roles():
    split = make_split(10, folds=2)
    r = roles(split, 1)
    assert r[0] == "test" and r[1] == "val" and r[2] == "train"


def test_score_folds_fitted_on_train_only():
    samples, split = make_samples(), make_split()
    table, meta = score_folds(samples, split, GEOM, MI, seed=0)
    assert len(table) == 3 * len(samples)
    assert meta["features"] == ["area", "squareness"] and set(meta["mi"]) == {"0", "1", "2"}
    for fold, part in table.groupby("fold"):
        train = part[part.role == "train"]
        # min-max of the training samples: exactly [0, 1] on them
        for col in ("feat_area", "feat_squareness"):
            assert train[col].min() == 0.0 and train[col].max() == 1.0
            assert part[col].between(0, 1).all()
        mi = np.array([meta["mi"][str(fold)][f] for f in meta["features"]])
        xn = part[["feat_area", "feat_squareness"]].to_numpy()
        np.testing.assert_allclose(part["score"], xn @ mi)
        assert set(part["box_label"]) <= {0, 1, 2}
        assert (part.role == "val").sum() == (split.fold == fold).sum()

    # a test sample's box changes nothing fitted: train and val rows stay identical
    moved = samples.copy()
    first_test = int(np.flatnonzero(split.test)[0])
    moved.loc[first_test, "xmax"] = 500.0
    table2, meta2 = score_folds(moved, split, GEOM, MI, seed=0)
    assert meta2["mi"] == meta["mi"]
    keep = table.role != "test"
    pd.testing.assert_frame_equal(table[keep], table2[keep])


def test_score_folds_deterministic():
    samples, split = make_samples(), make_split()
    a, ma = score_folds(samples, split, GEOM, MI, seed=3)
    b, mb = score_folds(samples, split, GEOM, MI, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert ma == mb


def test_score_folds_sample_missing_from_split():
    from tgmatl.errors import InputError

    samples, split = make_samples(), make_split()
    with pytest.raises(InputError, match="s00059 not in the split"):
        score_folds(samples, split.iloc[:-1], GEOM, MI, seed=0)


def test_table_one():
    out = table_one(make_samples(), GEOM, MI, seed=0)
    assert set(out["mi"]) == {"area", "squareness"}
    assert set(out["score"]) == {"cow", "deer", "horse"}
    assert out["score"]["cow"]["count"] == 20
    # the class-dependent width makes area informative
    assert out["mi"]["area"] > 0
