"""Probe heads (tgmatl.training.heads) on planted embeddings: agreement with scikit-learn's CV
estimators, the inner-CV selection itself, the too-small-class rule, determinism, validation."""

import logging
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.metrics import log_loss, r2_score
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler

from tgmatl.errors import InputError
from tgmatl.method.geometry import MinMax, box_features
from tgmatl.planted import planted_survey
from tgmatl.training.heads import ProbeClassifier, ProbeRegressor

GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _features(samples, train):
    """The pipeline's regression targets: min-max (training samples) of area and squareness."""
    raw = box_features(samples, ["area", "squareness"])
    return MinMax.fit(raw[train]).transform(raw)


def demo_fold(seed: int, fold: int):
    """A demo-sized fold: 240 samples (116/51/73), 70 % stratified test, 8 folds of the rest;
    trains on the 7 other folds (63 samples). Returns (x, y, features, train, test)."""
    s = planted_survey(240, seed=seed)
    y = s.samples["class_id"].to_numpy()
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        test[rng.choice(members, int(round(0.7 * len(members))), replace=False)] = True
    pool = rng.permutation(np.flatnonzero(~test))
    train = ~test
    train[pool[fold::8]] = False
    return s.embeddings, y, _features(s.samples, train), train, test


def first_n(n_train: int, n_test: int, seed: int, **kw):
    """The first ``n_train`` samples of a planted survey train, the next ``n_test`` test."""
    s = planted_survey(n_train + n_test, n_scenes=60, seed=seed, **kw)
    train = np.arange(n_train + n_test) < n_train
    return (s.embeddings, s.samples["class_id"].to_numpy(), _features(s.samples, train), train,
            ~train)


def scores(x, y, f, train, test, seed):
    """Test accuracy and R² of the probes and of scikit-learn's CV estimators (their defaults,
    standardised on the same training samples)."""
    clf = ProbeClassifier(GRID, 5, seed).fit(x[train], y[train])
    reg = ProbeRegressor(GRID).fit(x[train], f[train])
    sc = StandardScaler().fit(x[train])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference's lbfgs stops at 100 iterations
        ref_clf = LogisticRegressionCV(l1_ratios=(0.0,), scoring="accuracy",
                                       use_legacy_attributes=False)
        ref_clf.fit(sc.transform(x[train]), y[train])
    ref_reg = RidgeCV().fit(sc.transform(x[train]), f[train])
    zt = sc.transform(x[test])
    return {
        "acc": float((clf.predict(x[test]) == y[test]).mean()),
        "ref_acc": float((ref_clf.predict(zt) == y[test]).mean()),
        "r2": float(r2_score(f[test], reg.predict(x[test]))),
        "ref_r2": float(r2_score(f[test], ref_reg.predict(zt))),
    }


# --- agreement with scikit-learn ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_large_training_set_agrees_with_sklearn(seed):
    """With 1500 training samples the penalty barely matters: the same test predictions."""
    s = scores(*first_n(1500, 500, seed), seed)
    assert abs(s["acc"] - s["ref_acc"]) <= 0.01, s
    assert abs(s["r2"] - s["ref_r2"]) <= 0.02, s
    assert s["acc"] > 0.6 and s["r2"] > 0.3, s  # the planted signal is found at all


@pytest.mark.slow
def test_fold_sized_training_sets_not_worse_than_sklearn():
    """On demo folds (63 training samples) and 150-sample sets, the probes' mean test accuracy
    and R² are no worse than scikit-learn's defaults (whose ridge grid 0.1..10 is far too weak
    for ~60 samples in 64 dimensions, so R² is much better)."""
    runs = [scores(*demo_fold(seed, fold), seed) for seed in (0, 1) for fold in (0, 3, 6)]
    runs += [scores(*first_n(150, 300, seed), seed) for seed in (0, 1)]
    mean = {k: np.mean([r[k] for r in runs]) for k in runs[0]}
    assert mean["acc"] >= mean["ref_acc"] - 0.01, mean
    assert mean["r2"] >= mean["ref_r2"] - 0.02, mean
    assert mean["acc"] > 0.55 and mean["r2"] > 0.2, mean  # majority class: 0.48


# --- the selection itself -----------------------------------------------------------------------
def test_classifier_selects_the_l2_with_the_best_inner_cv_log_loss():
    """cv_log_loss_ is the seeded stratified inner CV's mean log-loss per grid value (in the
    order given), and l2_ its minimiser; checked against a hand-made CV loop."""
    x, y, _, train, _ = demo_fold(2, 0)
    x, y = x[train], y[train]
    grid = (10.0, 1000.0, 0.1, 100.0)  # unsorted on purpose
    clf = ProbeClassifier(grid, 4, seed=7).fit(x, y)
    z = StandardScaler().fit_transform(x.astype(np.float64))
    manual = []
    for a in grid:
        losses = []
        for tr, va in StratifiedKFold(4, shuffle=True, random_state=7).split(z, y):
            m = LogisticRegression(C=1 / a, solver="newton-cg", tol=1e-6, max_iter=5000)
            m.fit(z[tr], y[tr])
            losses.append(log_loss(y[va], m.predict_proba(z[va]), labels=m.classes_))
        manual.append(np.mean(losses))
    np.testing.assert_allclose(clf.cv_log_loss_, manual, rtol=2e-3)
    assert clf.l2_ == grid[int(np.argmin(manual))]
    assert clf.inner_folds_used_ == 4 and clf.fallback_ is None


def test_regressor_selects_the_l2_with_the_best_leave_one_out_error():
    x, _, f, train, _ = demo_fold(2, 0)
    x, f = x[train][:30], f[train][:30]
    grid = (100.0, 0.1, 10.0)
    reg = ProbeRegressor(grid).fit(x, f)
    z = StandardScaler().fit_transform(x.astype(np.float64))
    manual = []
    for a in grid:
        err = [(Ridge(alpha=a).fit(np.delete(z, i, 0), np.delete(f, i, 0)).predict(z[i:i + 1])
                - f[i]) ** 2 for i in range(len(z))]
        manual.append(np.mean(err))
    np.testing.assert_allclose(reg.cv_mse_, manual, rtol=1e-6)
    assert reg.l2_ == grid[int(np.argmin(manual))]


@pytest.mark.parametrize(("n", "dim"), [(40, 64), (300, 16)])
def test_regressor_equals_ridgecv_both_ways_round(n, dim):
    """One eigendecomposition, of ZZᵀ (n < d) or ZᵀZ (n >= d): RidgeCV's alpha, LOO errors and
    predictions, one target or several."""
    x, _, f, train, test = first_n(n, 50, 3, dim=dim)
    sc = StandardScaler().fit(x[train])
    for y in (f[train], f[train, 0]):
        ref = RidgeCV(alphas=GRID, store_cv_results=True).fit(sc.transform(x[train]), y)
        reg = ProbeRegressor(GRID).fit(x[train], y)
        assert reg.l2_ == ref.alpha_
        np.testing.assert_allclose(reg.cv_mse_, np.asarray(ref.cv_results_).reshape(
            n, -1, len(GRID)).mean(axis=(0, 1)), rtol=1e-6)
        np.testing.assert_allclose(reg.predict(x[test]), ref.predict(sc.transform(x[test])),
                                   rtol=1e-6, atol=1e-9)


def test_strength_follows_the_signal():
    """Pure noise: a strong penalty (the top of the grid's range); a strong planted signal: a
    weaker one. (On noise the inner-CV curve is flat at the top, so 100 or 1000 may win.)"""
    def fit(signal):
        x, y, f, train, _ = first_n(80, 1, 0, class_signal=signal, geometry_signal=signal)
        return (ProbeClassifier(GRID, 5, 0).fit(x[train], y[train]),
                ProbeRegressor(GRID).fit(x[train], f[train]))

    (clf0, reg0), (clf4, reg4) = fit(0.0), fit(4.0)
    assert clf0.l2_ >= 100 and reg0.l2_ >= 100, (clf0.cv_log_loss_, reg0.cv_mse_)
    assert clf4.l2_ <= 1 and reg4.l2_ < reg0.l2_, (clf4.cv_log_loss_, reg4.cv_mse_)


def test_predictions_have_the_fitted_classes():
    x, y, _, train, test = demo_fold(0, 1)
    labels = np.array([2, 5, 9])[y]
    clf = ProbeClassifier(GRID, 5, 0).fit(x[train], labels[train])
    p = clf.predict_proba(x[test])
    assert clf.classes_.tolist() == [2, 5, 9]
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-9)
    assert set(clf.predict(x[test])) <= {2, 5, 9}
    assert clf.decision_function(x[test]).shape == (int(test.sum()), 3)


def test_inputs_are_standardised_on_the_training_samples():
    """Rescaling and shifting embedding dimensions changes nothing (the penalty acts on the
    standardised embedding)."""
    x, y, f, train, test = demo_fold(0, 2)
    x = x.astype(np.float64)
    scale = np.geomspace(1e-3, 1e3, x.shape[1])
    moved = x * scale + 50.0
    a = ProbeClassifier(GRID, 5, 0).fit(x[train], y[train])
    b = ProbeClassifier(GRID, 5, 0).fit(moved[train], y[train])
    assert a.l2_ == b.l2_
    np.testing.assert_allclose(a.predict_proba(x[test]), b.predict_proba(moved[test]),
                               atol=1e-5)
    ra, rb = ProbeRegressor(GRID).fit(x[train], f[train]), ProbeRegressor(GRID).fit(
        moved[train], f[train])
    np.testing.assert_allclose(ra.predict(x[test]), rb.predict(moved[test]), atol=1e-8)


# --- too-small classes ----------------------------------------------------------------------------
def _counts(counts, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    x = rng.standard_normal((len(y), 8)) + y[:, None]
    return x, y


def test_small_class_falls_back_to_fewer_inner_folds_and_says_so(caplog):
    x, y = _counts((20, 20, 3))
    with caplog.at_level(logging.WARNING, logger="tgmatl.training.heads"):
        clf = ProbeClassifier(GRID, 5, 0).fit(x, y)
    assert clf.inner_folds_used_ == 3
    assert "heads.inner_folds=5" in clf.fallback_ and "only 3 training samples" in clf.fallback_
    assert clf.fallback_ in caplog.text
    assert (clf.predict(x) == y).mean() > 0.8


def test_enough_members_no_fallback(caplog):
    x, y = _counts((20, 20, 5))
    with caplog.at_level(logging.WARNING, logger="tgmatl.training.heads"):
        clf = ProbeClassifier(GRID, 5, 0).fit(x, y)
    assert clf.inner_folds_used_ == 5 and clf.fallback_ is None and not caplog.text


def test_single_member_class_is_an_error():
    x, y = _counts((20, 20, 1))
    with pytest.raises(InputError, match=r"heads\.inner_folds=5: class 2 has 1 training sample"):
        ProbeClassifier(GRID, 5, 0).fit(x, y)


# --- determinism ----------------------------------------------------------------------------------
def test_deterministic_for_a_seed():
    x, y, f, train, test = demo_fold(1, 2)
    a = ProbeClassifier(GRID, 5, 3).fit(x[train], y[train])
    b = clone(a).fit(x[train], y[train])
    assert a.l2_ == b.l2_ and a.cv_log_loss_ == b.cv_log_loss_
    assert np.array_equal(a.predict_proba(x[test]), b.predict_proba(x[test]))
    other = ProbeClassifier(GRID, 5, 4).fit(x[train], y[train])
    assert other.cv_log_loss_ != a.cv_log_loss_  # the seed draws the inner folds
    r1 = ProbeRegressor(GRID).fit(x[train], f[train]).predict(x[test])
    r2 = ProbeRegressor(GRID).fit(x[train], f[train]).predict(x[test])
    assert np.array_equal(r1, r2)


# --- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, error, match", [
    ({"l2_grid": ()}, ValueError, "l2_grid: need at least one"),
    ({"l2_grid": (1.0, 0.0)}, ValueError, "l2_grid: need finite strengths > 0"),
    ({"l2_grid": (-1.0,)}, ValueError, "l2_grid"),
    ({"l2_grid": (float("nan"),)}, ValueError, "l2_grid"),
    ({"l2_grid": (float("inf"),)}, ValueError, "l2_grid"),
    ({"l2_grid": "1.0"}, TypeError, "l2_grid"),
    ({"l2_grid": (1.0, "2")}, TypeError, "l2_grid"),
    ({"inner_folds": 1}, ValueError, "inner_folds: need >= 2"),
    ({"inner_folds": 2.5}, TypeError, "inner_folds: need an int"),
    ({"inner_folds": True}, TypeError, "inner_folds"),
    ({"seed": "1"}, TypeError, "seed: need an int"),
    ({"seed": 1.0}, TypeError, "seed"),
    ({"seed": -1}, ValueError, "seed: need >= 0"),
])
def test_bad_parameters_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        ProbeClassifier(**{"l2_grid": GRID, "inner_folds": 5, "seed": 0, **kwargs})
    if "l2_grid" in kwargs:
        with pytest.raises(error, match=match):
            ProbeRegressor(kwargs["l2_grid"])


def test_parameters_changed_after_construction_are_checked_by_fit():
    x, y = _counts((10, 10))
    clf = ProbeClassifier(GRID, 5, 0).set_params(l2_grid=(0.0,))
    with pytest.raises(ValueError, match="l2_grid"):
        clf.fit(x, y)


def test_bad_data_is_named():
    x, y = _counts((10, 10))
    f = np.c_[y, y].astype(float)
    bad = x.copy()
    bad[4, 2] = np.nan
    clf, reg = ProbeClassifier(GRID, 2, 0), ProbeRegressor(GRID)
    with pytest.raises(ValueError, match=r"x: 1 non-finite value\(s\), first at sample 4, "
                                         r"feature 2"):
        clf.fit(bad, y)
    with pytest.raises(ValueError, match="x: 1 non-finite"):
        reg.fit(bad, f)
    with pytest.raises(ValueError, match="x: need a non-empty 2-D"):
        clf.fit(x[:, 0], y)
    with pytest.raises(ValueError, match="y: need one label per sample"):
        clf.fit(x, y[:-1])
    with pytest.raises(ValueError, match="y: need"):
        reg.fit(x, f[:-1])
    with pytest.raises(ValueError, match="y: targets must be finite"):
        reg.fit(x, np.where(f == 1, np.inf, f))
    with pytest.raises(InputError, match="y: need >= 2 classes"):
        clf.fit(x, np.zeros(len(x), int))
    clf.fit(x, y)
    reg.fit(x, f)
    with pytest.raises(ValueError, match="x: fitted on 8 features, got 7"):
        clf.predict(x[:, :7])
    with pytest.raises(ValueError, match="x: fitted on 8 features, got 7"):
        reg.predict(x[:, :7])
