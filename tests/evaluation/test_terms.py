"""Per-sample terms (tgmatl.evaluation.terms): their unit mean is the metric exactly."""

import numpy as np
import pytest
from sklearn.metrics import r2_score

from tgmatl.evaluation import terms
from tgmatl.evaluation.metrics import retrieval_metrics


def test_r2_terms_match_r2_score_differences_exactly():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(30, 2)) * [1.0, 3.0]
    pa = truth + rng.normal(scale=0.5, size=truth.shape)
    pb = truth + rng.normal(scale=0.8, size=truth.shape)
    ua, ub = terms.r2_terms(truth, pa), terms.r2_terms(truth, pb)
    assert ua.mean() == pytest.approx(r2_score(truth, pa), abs=1e-12)
    assert (ua - ub).mean() == pytest.approx(r2_score(truth, pa) - r2_score(truth, pb), abs=1e-12)
    # c_i = -(n/K) sum_k (se_A,ik - se_B,ik) / SST_k
    sst = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    c = -(30 / 2) * (((truth - pa) ** 2 - (truth - pb) ** 2) / sst).sum(axis=1)
    assert np.allclose(ua - ub, c)
    with pytest.raises(ValueError, match="constant"):
        terms.r2_terms(np.ones((4, 1)), np.zeros((4, 1)))


def test_accuracy_terms():
    assert terms.accuracy_terms(np.array([0, 1, 2]), np.array([0, 2, 2])).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="y_pred"):
        terms.accuracy_terms(np.array([0, 1]), np.array([0]))


def test_map_terms_mean_and_jackknife_variance():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(12, 3))
    labels = np.repeat([0, 1, 2], 4)
    t = terms.map_at_r_terms(emb, labels)
    full = retrieval_metrics(emb, labels)["map_at_r"]
    assert t.mean() == pytest.approx(full)
    # var(t)/n is the jackknife variance (n-1)/n sum_j (MAP_(-j) - mean)², by brute force
    loo = np.array([retrieval_metrics(np.delete(emb, j, 0), np.delete(labels, j))["map_at_r"]
                    for j in range(12)])
    assert t.var(ddof=1) / 12 == pytest.approx(11 / 12 * np.sum((loo - loo.mean()) ** 2))
    # no sample shares its label: MAP@R undefined, no terms (NaN: left out by compare)
    assert np.isnan(terms.map_at_r_terms(emb[:3], np.arange(3))).all()
