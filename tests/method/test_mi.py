"""Mutual information, Eq. 5 and pointwise-MI scores, Table I statistics, per-fold scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgmatl.config import BoxLabelParams, GeometryParams, MIParams
from tgmatl.method.mi import (
    feature_mi,
    pointwise_mi,
    pointwise_scores,
    roles,
    sample_scores,
    score_folds,
    score_stats,
    table_one,
)

GEOM = GeometryParams(features=("area", "squareness"), box_label=BoxLabelParams("kmeans", 3))
MI = MIParams(n_neighbors=3, score="eq5")
PMI = MIParams(n_neighbors=3, score="pointwise")


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
    return pd.DataFrame({"repeat": np.int32(0), "sample_id": [f"s{i:05d}" for i in range(n)],
                         "test": test, "fold": fold})


def test_roles():
    split = make_split(10, folds=2)
    r = roles(split, 1)
    assert r[0] == "test" and r[1] == "val" and r[2] == "train"


def test_score_folds_fitted_on_train_only():
    samples, split = make_samples(), make_split()
    table, meta = score_folds(samples, split, GEOM, MI, seed=0)
    assert len(table) == 3 * len(samples)
    assert meta["features"] == ["area", "squareness"] and set(meta["mi"]) == {"0/0", "0/1", "0/2"}
    for fold, part in table.groupby("fold"):
        train = part[part.role == "train"]
        # min-max of the training samples: exactly [0, 1] on them
        for col in ("feat_area", "feat_squareness"):
            assert train[col].min() == 0.0 and train[col].max() == 1.0
            assert part[col].between(0, 1).all()
        mi = np.array([meta["mi"][f"0/{fold}"][f] for f in meta["features"]])
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


# --- pointwise MI ---------------------------------------------------------------------------
def test_pointwise_mean_is_mutual_info_classif():
    from sklearn.feature_selection import mutual_info_classif

    x, y = planted(n=90, seed=2)
    x = np.column_stack([x, np.round(x[:, 1], 1)])  # a feature with many tied values
    y = y.copy()
    y[5] = 7  # a class with one sample: no term, left out of the mean (as scikit-learn)
    for k, seed in [(1, 0), (3, 11), (5, 12345), (60, 3)]:
        terms = pointwise_mi(x, y, k, seed, per_feature=True)
        assert terms.shape == x.shape
        assert np.isnan(terms[5]).all() and np.isfinite(np.delete(terms, 5, axis=0)).all()
        ref = mutual_info_classif(x, y, discrete_features=False, n_neighbors=k, random_state=seed)
        # scikit-learn clips the mean at 0 (the noise feature can land there)
        np.testing.assert_allclose(np.maximum(0, np.nanmean(terms, axis=0)), ref, rtol=0,
                                   atol=1e-9)
        np.testing.assert_allclose(np.maximum(0, np.nanmean(terms, axis=0)),
                                   feature_mi(x, y, k, seed), rtol=0, atol=1e-9)


def test_pointwise_joint_equals_per_feature_for_one_feature():
    x, y = planted()
    joint = pointwise_mi(x[:, [1]], y, 3, seed=4)
    np.testing.assert_array_equal(joint, pointwise_mi(x[:, [1]], y, 3, 4, per_feature=True)[:, 0])
    assert joint.shape == (len(y),)


def regions(n_region=60, seed=0):
    """Two geometry regions, same class mix: in D (x0 in [0, 1], x1 < 0.6) x1 decides the class
    (two separated bands); in M (x0 in [2, 3], x1 in [0.7, 1]: larger on both features) the
    classes are drawn at random."""
    rng = np.random.default_rng(seed)
    y_d = np.repeat([0, 1], n_region // 2)
    x_d = np.column_stack([rng.uniform(0, 1, n_region), 0.4 * y_d + rng.uniform(0, 0.2, n_region)])
    y_m = rng.permutation(np.repeat([0, 1], n_region // 2))
    x_m = np.column_stack([rng.uniform(2, 3, n_region), rng.uniform(0.7, 1.0, n_region)])
    region = np.repeat(["D", "M"], n_region)
    return np.vstack([x_d, x_m]), np.concatenate([y_d, y_m]), region


def auc(a, b):
    """P(a score from ``a`` > one from ``b``), ties counting half."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def test_pointwise_ranks_determined_region_above_mixed():
    x, y, region = regions()
    s = pointwise_scores(x, y, 3, seed=0)
    d, m = s[region == "D"], s[region == "M"]
    # in D every neighbour shares the class: the maximum term, ψ(N) − ψ(N/2) ≈ ln 2
    top = s.max()
    assert (d == top).all() and top == pytest.approx(np.log(2), abs=0.05)
    # in M only the samples whose few neighbours happen to agree reach it
    assert (m == top).mean() < 0.3 and abs(m.mean()) < 0.25
    assert auc(d, m) > 0.8
    # Eq. 5 on the same data ranks by size: the mixed (larger) region comes first
    xn = x / x.max(axis=0)
    eq5 = sample_scores(xn, feature_mi(xn, y, 3, 0))
    assert auc(eq5[region == "D"], eq5[region == "M"]) < 0.1


def test_pointwise_joint_sees_what_single_features_miss():
    """Class = XOR of two feature halves: neither feature alone says anything, both do."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(200, 2))
    y = ((x[:, 0] > 0.5) ^ (x[:, 1] > 0.5)).astype(int)
    joint = pointwise_mi(x, y, 3, seed=0)
    summed = pointwise_mi(x, y, 3, seed=0, per_feature=True).sum(axis=1)
    assert joint.mean() > 0.5  # ln 2 = 0.69 nats at most
    assert abs(summed.mean()) < 0.1


def test_pointwise_redundant_copy_not_counted_twice():
    x, y = planted()
    one = pointwise_mi(x[:, [1]], y, 3, seed=0)
    two = pointwise_mi(x[:, [1, 1]], y, 3, seed=0)
    summed = pointwise_mi(x[:, [1, 1]], y, 3, seed=0, per_feature=True).sum(axis=1)
    assert abs(two.mean() - one.mean()) < 0.05
    assert summed.mean() > 1.8 * one.mean()


def test_pointwise_constant_feature_and_singleton():
    x, y = planted()
    with_const = np.column_stack([x, np.full(len(y), 0.5)])
    per = pointwise_mi(with_const, y, 3, seed=0, per_feature=True)
    assert (per[:, 2] == 0).all()
    np.testing.assert_array_equal(pointwise_mi(with_const, y, 3, 0), pointwise_mi(x, y, 3, 0))
    assert (pointwise_mi(np.full((6, 2), 1.0), np.array([0, 0, 0, 1, 1, 1]), 3, 0) == 0).all()
    y = y.copy()
    y[0] = 9
    assert np.isnan(pointwise_mi(x, y, 3, 0)[0])
    s = pointwise_scores(x, y, 3, 0)
    assert s[0] == 0.0 and np.isfinite(s).all()


def test_pointwise_deterministic():
    x, y, _ = regions()
    x = np.round(x, 1)  # ties: the seeded jitter decides them, identically on every call
    np.testing.assert_array_equal(pointwise_mi(x, y, 3, 5), pointwise_mi(x, y, 3, 5))
    np.testing.assert_array_equal(pointwise_scores(x, y, 3, 5), pointwise_scores(x, y, 3, 5))


@pytest.mark.parametrize(
    ("x", "y", "k", "match"),
    [
        (np.zeros((5, 2)), np.zeros(4), 3, "do not match"),
        (np.zeros(5), np.zeros(5), 3, "do not match"),
        (np.zeros((1, 2)), np.zeros(1), 3, "at least 2 samples"),
        (np.array([[0.0, 1.0], [np.nan, 1.0], [1.0, 2.0]]), np.zeros(3), 3, "sample 1"),
        (np.zeros((5, 2)), np.zeros(5), 0, "n_neighbors: 0"),
        (np.zeros((5, 2)), np.zeros(5), 2.5, "n_neighbors: expected an integer"),
    ],
)
def test_pointwise_bad_input(x, y, k, match):
    with pytest.raises(ValueError, match=match):
        pointwise_mi(x, y, k, 0)


def test_mi_params_score_checked():
    from tgmatl.params import ParamsError, parse_section

    assert parse_section(MIParams, {"n_neighbors": 3, "score": "pointwise"}, "mi") == PMI
    with pytest.raises(ParamsError, match=r"mi\.score: 'pmi' is not one of eq5\|pointwise"):
        parse_section(MIParams, {"n_neighbors": 3, "score": "pmi"}, "mi")
    with pytest.raises(ParamsError, match=r"mi\.score: missing"):
        parse_section(MIParams, {"n_neighbors": 3}, "mi")


def test_score_folds_pointwise():
    from tgmatl.config import SamplingParams
    from tgmatl.method.selection import select_folds

    samples, split = make_samples(), make_split()
    table, meta = score_folds(samples, split, GEOM, PMI, seed=0)
    eq5, meta5 = score_folds(samples, split, GEOM, MI, seed=0)
    assert meta["score"] == "pointwise" and meta5["score"] == "eq5" and "joint_mi" not in meta5
    assert meta["mi"] == meta5["mi"] and set(meta["joint_mi"]) == {"0/0", "0/1", "0/2"}
    # features and box labels do not depend on the score
    pd.testing.assert_frame_equal(table.drop(columns="score"), eq5.drop(columns="score"))
    for fold, part in table.groupby("fold"):
        train = (part.role == "train").to_numpy()
        assert part["score"][~train].isna().all()
        xn = part[["feat_area", "feat_squareness"]].to_numpy()[train]
        expect = pointwise_scores(xn, part["class_id"].to_numpy()[train], 3, 0)
        np.testing.assert_array_equal(part["score"].to_numpy()[train], expect)
        assert meta["joint_mi"][f"0/{fold}"] == pytest.approx(max(0.0, expect.mean()), abs=1e-12)
    # a test sample's box changes nothing fitted
    moved = samples.copy()
    moved.loc[int(np.flatnonzero(split.test)[0]), "xmax"] = 500.0
    table2, _ = score_folds(moved, split, GEOM, PMI, seed=0)
    keep = table.role == "train"
    pd.testing.assert_series_equal(table.score[keep], table2.score[keep])
    # the select stage accepts it (NaN rows are not training rows)
    masks = select_folds(table, SamplingParams(0.2, 0.1, "random", "dataset", "all"), seed=0)
    assert len(masks) == int((table.role == "train").sum())


def test_table_one_names_its_score():
    eq5 = table_one(make_samples(), GEOM, MI, seed=0)
    pw = table_one(make_samples(), GEOM, PMI, seed=0)
    assert eq5["score_kind"] == "eq5" and "joint_mi" not in eq5
    assert pw["score_kind"] == "pointwise" and pw["mi"] == eq5["mi"]
    assert pw["joint_mi"] > 0 and pw["score"]["cow"]["count"] == 20
    assert pw["score"] != eq5["score"]
