"""Test metrics against scikit-learn and hand-computed retrieval cases."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score, recall_score

from tgmatl.evaluation import classification_metrics, regression_metrics, retrieval_metrics


def test_map_at_r_hand_built_case():
    """The module docstring's example: A at 0, 1.2, 3; B at 2, 10, 11."""
    emb = np.array([[0.0], [1.2], [3.0], [2.0], [10.0], [11.0]])
    labels = np.array(["A", "A", "A", "B", "B", "B"])
    m = retrieval_metrics(emb, labels, prefix="class_")
    assert m["class_map_at_r"] == pytest.approx(1 / 3)
    assert m["class_p_at_1"] == pytest.approx(0.5)


def test_retrieval_perfect_clusters_and_self_match_excluded():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 4)
    emb = np.eye(3)[labels] * 10 + rng.normal(scale=0.01, size=(12, 3))
    m = retrieval_metrics(emb, labels)
    assert m == {"p_at_1": 1.0, "map_at_r": 1.0}
    # query 0's twin (distance 0) has another label: the query itself never counts as its
    # own nearest neighbour, so it misses; query 2 hits sample 0 (tie with 1, lower index)
    m2 = retrieval_metrics(np.array([[0.0], [0.0], [5.0]]), np.array([0, 1, 0]))
    assert m2["p_at_1"] == 0.5


def test_retrieval_ties_broken_by_index_and_singletons_skipped():
    # query 0: samples 1 (other label) and 2 (same label) are equally far; index 1 comes first
    emb = np.array([[0.0], [1.0], [-1.0], [50.0]])
    labels = np.array([0, 1, 0, 2])  # label 2 and label 1 are singletons: no query
    m = retrieval_metrics(emb, labels)
    # queries: 0 (R=1, nearest is 1 -> miss) and 2 (R=1, nearest is 0 -> hit)
    assert m["p_at_1"] == pytest.approx(0.5)
    assert m["map_at_r"] == pytest.approx(0.5)
    assert retrieval_metrics(emb, np.arange(4)) == {"p_at_1": None, "map_at_r": None}


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 60)
    p = np.where(rng.uniform(size=60) < 0.7, y, rng.integers(0, 3, 60))
    m = classification_metrics(y, p, ["cow", "deer", "horse"])
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["f1_macro"] == pytest.approx(f1_score(y, p, average="macro"))
    recall = recall_score(y, p, average=None)
    for c, name in enumerate(["cow", "deer", "horse"]):
        assert m["accuracy_per_class"][name] == pytest.approx(recall[c])


def test_classification_absent_class_is_none():
    m = classification_metrics(np.array([0, 0, 1]), np.array([0, 1, 1]), ["a", "b", "c"])
    assert m["accuracy_per_class"] == {"a": 0.5, "b": 1.0, "c": None}
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(2)
    y = rng.uniform(size=(40, 2))
    p = y + rng.normal(scale=0.1, size=(40, 2))
    m = regression_metrics(y, p, ["area", "squareness"])
    assert m["r2"] == pytest.approx(r2_score(y, p))
    per = r2_score(y, p, multioutput="raw_values")
    assert m["r2_per_feature"] == {"area": pytest.approx(per[0]),
                                   "squareness": pytest.approx(per[1])}
    assert m["mse"] == pytest.approx(mean_squared_error(y, p))
    assert regression_metrics(y, np.tile(y.mean(axis=0), (40, 1)), ["a", "b"])["r2"] == (
        pytest.approx(0.0))


def test_per_query_ap_and_leave_one_out_match_brute_force():
    from tgmatl.evaluation import average_precision_at_r, map_at_r_leave_one_out

    rng = np.random.default_rng(3)
    for trial in range(12):
        n = int(rng.integers(3, 16))
        emb = rng.normal(size=(n, 2))
        if trial % 3 == 0:
            emb = np.round(emb)  # distance ties
        labels = rng.integers(0, 3, n)
        ap = average_precision_at_r(emb, labels)
        m = retrieval_metrics(emb, labels)["map_at_r"]
        assert (m is None and np.all(np.isnan(ap))) or np.nanmean(ap) == pytest.approx(m)
        loo = map_at_r_leave_one_out(emb, labels)
        for j in range(n):
            ref = retrieval_metrics(np.delete(emb, j, 0), np.delete(labels, j))["map_at_r"]
            if ref is None:
                assert np.isnan(loo[j])
            else:
                assert loo[j] == pytest.approx(ref, abs=1e-12)
