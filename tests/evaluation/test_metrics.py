"""Test metrics against scikit-learn and hand-computed retrieval cases."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, r2_score, recall_score

from tgmatl.evaluation.metrics import (
    classification_metrics,
    neighbour_order,
    regression_metrics,
    retrieval_metrics,
)

DOC_EMB = np.array([[0.0], [1.2], [3.0], [2.0], [10.0], [11.0]])
DOC_LABELS = np.array(["A", "A", "A", "B", "B", "B"])


def test_map_at_r_hand_built_case():
    """The module docstring's example: A at 0, 1.2, 3; B at 2, 10, 11."""
    emb = np.array([[0.0], [1.2], [3.0], [2.0], [10.0], [11.0]])
    labels = np.array(["A", "A", "A", "B", "B", "B"])
    m = retrieval_metrics(emb, labels, prefix="class_")
    assert m["class_map_at_r"] == pytest.approx(1 / 3)
    assert m["class_p_at_1"] == pytest.approx(0.5)


def test_groups_hand_built_case():
    """The module docstring's example with groups: 0 and 1.2 share an image."""
    groups = np.array(["g", "g", "p3", "p2", "p10", "p11"])
    m, per = retrieval_metrics(DOC_EMB, DOC_LABELS, "class_", groups=groups, per_query=True)
    assert m["class_map_at_r"] == pytest.approx(5 / 24)
    assert m["class_p_at_1"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(per["ap"], [0, 0, 0.25, 0, 0.5, 0.5])
    np.testing.assert_array_equal(per["hit_at_1"], [0, 0, 0, 0, 1, 1])
    order = neighbour_order(DOC_EMB, groups)
    assert order[0].tolist() == [3, 2, 4, 5, -1]  # 1.2 (same image) is no reference
    # a precomputed order, with or without the groups, gives the same numbers
    assert retrieval_metrics(DOC_EMB, DOC_LABELS, "class_", order, groups) == m
    assert retrieval_metrics(DOC_EMB, DOC_LABELS, "class_", neighbour_order(DOC_EMB),
                             groups) == m


def test_per_query_terms_average_to_the_metrics_and_nan_without_match():
    m, per = retrieval_metrics(DOC_EMB, DOC_LABELS, per_query=True)
    np.testing.assert_allclose(per["ap"], [0.5, 0.25, 0.25, 0, 0.5, 0.5])
    assert np.nanmean(per["ap"]) == pytest.approx(m["map_at_r"])
    assert np.nanmean(per["hit_at_1"]) == pytest.approx(m["p_at_1"])
    # label C's only other member is in its group: no match, NaN, left out of the means
    labels = np.array([0, 0, 1, 1, 2, 2])
    groups = np.array([0, 1, 2, 3, 4, 4])
    emb = np.array([[0.0], [0.1], [5.0], [5.1], [10.0], [10.1]])
    m, per = retrieval_metrics(emb, labels, groups=groups, per_query=True)
    assert np.isnan(per["ap"][4:]).all() and np.isnan(per["hit_at_1"][4:]).all()
    assert not np.isnan(per["ap"][:4]).any()
    assert m["p_at_1"] == pytest.approx(1.0)


def _brute_force(emb, labels, groups):
    """Straight from the definitions: per query, sort the allowed references by distance."""
    aps, hits = [], []
    for i in range(len(labels)):
        refs = [j for j in range(len(labels)) if j != i and groups[j] != groups[i]]
        refs.sort(key=lambda j: (np.linalg.norm(emb[i] - emb[j]), j))
        rel = np.array([labels[j] == labels[i] for j in refs], float)
        r = int(rel.sum())
        if r == 0:
            continue
        prec = np.cumsum(rel[:r]) / np.arange(1, r + 1)
        aps.append((prec * rel[:r]).sum() / r)
        hits.append(rel[0])
    return np.mean(hits), np.mean(aps)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 40
    emb = rng.normal(size=(n, 3))
    labels = rng.integers(0, 3, n)
    groups = rng.integers(0, 15, n)
    emb[1] = emb[0]  # an identical twin in another group
    m = retrieval_metrics(emb, labels, groups=groups)
    p1, mapr = _brute_force(emb, labels, groups)
    assert m["p_at_1"] == pytest.approx(p1) and m["map_at_r"] == pytest.approx(mapr)
    # without groups, every other sample is a reference
    m = retrieval_metrics(emb, labels)
    p1, mapr = _brute_force(emb, labels, np.arange(n))
    assert m["p_at_1"] == pytest.approx(p1) and m["map_at_r"] == pytest.approx(mapr)


def test_identical_image_twins_inflate_retrieval_without_groups():
    """Twins (two targets in one tile, one embedding) are perfect hits unless grouped out."""
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 20)
    emb = rng.normal(size=(40, 8))
    emb[1::2] = emb[0::2]  # pairs of same-label twins with one embedding
    image = np.arange(40) // 2
    assert retrieval_metrics(emb, labels)["p_at_1"] == 1.0
    assert retrieval_metrics(emb, labels, groups=image)["p_at_1"] < 0.8


def test_groups_shape_checked():
    with pytest.raises(ValueError, match="groups"):
        retrieval_metrics(DOC_EMB, DOC_LABELS, groups=np.arange(5))


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


@pytest.mark.parametrize("with_groups", [False, True])
def test_leave_one_out_map_matches_brute_force(with_groups):
    from tgmatl.evaluation.metrics import map_at_r_leave_one_out

    rng = np.random.default_rng(3)
    for trial in range(12):
        n = int(rng.integers(3, 16))
        emb = rng.normal(size=(n, 2))
        if trial % 3 == 0:
            emb = np.round(emb)  # distance ties
        labels = rng.integers(0, 3, n)
        groups = rng.integers(0, max(2, n // 2), n) if with_groups else None
        loo = map_at_r_leave_one_out(emb, labels, groups)
        for j in range(n):
            g = None if groups is None else np.delete(groups, j)
            ref = retrieval_metrics(np.delete(emb, j, 0), np.delete(labels, j),
                                    groups=g)["map_at_r"]
            if ref is None:
                assert np.isnan(loo[j])
            else:
                assert loo[j] == pytest.approx(ref, abs=1e-12)


def _ranked_inputs(seed=5, n=40):
    rng = np.random.default_rng(seed)
    emb = np.round(rng.normal(size=(n, 3)), 1)  # some distance ties
    return emb, rng.integers(0, 3, n), rng.integers(0, n // 3, n), rng


@pytest.mark.parametrize("with_groups", [False, True])
def test_query_subset_keeps_each_querys_values_and_every_reference(with_groups):
    """Capped queries: each drawn query's AP / hit@1 is its all-query value (every sample is
    still a reference); the others are NaN; the mean is over the drawn queries."""
    from tgmatl.evaluation.metrics import query_sample

    emb, labels, groups, rng = _ranked_inputs()
    groups = groups if with_groups else None
    _, full = retrieval_metrics(emb, labels, groups=groups, per_query=True)
    queries = query_sample(len(labels), 12, rng)
    assert len(queries) == 12 and np.all(np.diff(queries) > 0)
    m, per = retrieval_metrics(emb, labels, groups=groups, per_query=True, queries=queries)
    np.testing.assert_array_equal(per["ap"][queries], full["ap"][queries])
    np.testing.assert_array_equal(per["hit_at_1"][queries], full["hit_at_1"][queries])
    assert np.isnan(np.delete(per["ap"], queries)).all()
    assert m["map_at_r"] == pytest.approx(np.nanmean(full["ap"][queries]))
    order = neighbour_order(emb, groups, queries)
    assert order.shape == (12, len(labels) - 1)
    assert retrieval_metrics(emb, labels, "", order, groups, queries=queries) == m
    assert query_sample(12, 12, rng) is None  # under the cap: every sample is a query


@pytest.mark.parametrize("with_groups", [False, True])
def test_leave_one_out_with_query_subset_matches_brute_force(with_groups):
    """MAP@R over the drawn queries without sample j (j leaves the queries if it is one)."""
    from tgmatl.evaluation.metrics import map_at_r_leave_one_out

    emb, labels, groups, rng = _ranked_inputs(seed=8, n=18)
    groups = groups if with_groups else None
    queries = np.sort(rng.choice(18, 7, replace=False))
    loo = map_at_r_leave_one_out(emb, labels, groups, queries)
    for j in range(18):
        keep = np.delete(np.arange(18), j)
        q = np.searchsorted(keep, queries[queries != j])  # the same queries, renumbered
        g = None if groups is None else groups[keep]
        ref = retrieval_metrics(emb[keep], labels[keep], groups=g, queries=q)["map_at_r"]
        assert (np.isnan(loo[j]) if ref is None else loo[j] == pytest.approx(ref, abs=1e-12))


def test_row_chunks_do_not_change_the_results(monkeypatch):
    """Rankings are computed a few query rows at a time; the chunk size changes nothing."""
    from tgmatl.evaluation import metrics as evaluation

    emb, labels, groups, _ = _ranked_inputs(seed=2, n=30)
    whole = evaluation.retrieve(emb, [labels, labels % 2], groups, leave_one_out=True)
    monkeypatch.setattr(evaluation, "_CHUNK_ELEMENTS", 70)  # 2 rows a chunk
    chunked = evaluation.retrieve(emb, [labels, labels % 2], groups, leave_one_out=True)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a.ap, b.ap)
        np.testing.assert_array_equal(a.hit, b.hit)
        np.testing.assert_allclose(a.loo, b.loo, rtol=0, atol=1e-15)


def test_query_indices_are_checked():
    with pytest.raises(ValueError, match="queries"):
        retrieval_metrics(DOC_EMB, DOC_LABELS, queries=np.array([0, 6]))
