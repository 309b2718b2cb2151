"""Test metrics: classification, box-feature regression, retrieval in the embedding space.

Retrieval metrics (Musgrave et al., "A Metric Learning Reality Check", 2020) use Euclidean
distance in the given space (callers pass L2-normalised embeddings), exclude the query itself,
and break distance ties by sample index. A query whose label no reference shares has no
correct answer and is left out of both metrics.

- precision@1: share of queries whose nearest reference has the query's label.
- MAP@R: for a query with ``R`` references of its label, the mean over ``k = 1..R`` of
  ``P(k) * rel(k)``, where ``rel(k)`` is 1 when the ``k``-th nearest reference shares the label
  and ``P(k)`` is the precision of the first ``k``; averaged over queries.

A query's references are all other samples; with ``groups`` (e.g. each sample's image path),
also without the samples of the query's own group: a target's identical-image twin (two
targets in one tile) is neither a hit nor counted in ``R``.

Hand-built example (1-D points, label A at 0, 1.2, 3 and label B at 2, 10, 11; R = 2 for all)::

    query 0   (A): nearest 1.2 A, 2 B        -> AP = (1/1)/2           = 0.5,  hit@1
    query 1.2 (A): nearest 2 B, 0 A          -> AP = (0 + 1/2)/2       = 0.25
    query 3   (A): nearest 2 B, 1.2 A        -> AP = (0 + 1/2)/2       = 0.25
    query 2   (B): nearest 1.2 A, 3 A        -> AP = 0
    query 10  (B): nearest 11 B, 3 A         -> AP = 0.5,              hit@1
    query 11  (B): nearest 10 B, 3 A         -> AP = 0.5,              hit@1
    MAP@R = (0.5 + 0.25 + 0.25 + 0 + 0.5 + 0.5) / 6 = 1/3;  precision@1 = 3/6 = 0.5

The same points with groups: 0 and 1.2 share an image (group g), every other point is alone.
Queries 0 and 1.2 lose each other as references (R = 1: only 3 is an A reference)::

    query 0   (A): nearest 2 B, 3 A          -> AP = 0/1               = 0
    query 1.2 (A): nearest 2 B, 3 A          -> AP = 0
    query 3   (A): nearest 2 B, 1.2 A        -> AP = (0 + 1/2)/2       = 0.25
    query 2   (B): nearest 1.2 A, 3 A        -> AP = 0
    query 10  (B), query 11 (B): as above    -> AP = 0.5 each,         hit@1
    MAP@R = (0 + 0 + 0.25 + 0 + 0.5 + 0.5) / 6 = 5/24;  precision@1 = 2/6 = 1/3
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
from sklearn.metrics import f1_score, mean_squared_error, r2_score


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]
) -> dict:
    """Overall accuracy, macro F1 over all classes, and per-class accuracy (recall).

    A class absent from ``y_true`` has per-class accuracy ``None``.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    per_class: dict[str, float | None] = {}
    for c, name in enumerate(class_names):
        sel = y_true == c
        per_class[name] = float((y_pred[sel] == c).mean()) if sel.any() else None
    return {
        "accuracy": float((y_true == y_pred).mean()),
        # macro over the classes present in truth or prediction (sklearn's rule)
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "accuracy_per_class": per_class,
    }


def regression_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, feature_names: Sequence[str]
) -> dict:
    """R² (uniform average over features, and per feature) and MSE over all values."""
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    per = r2_score(y_true, y_pred, multioutput="raw_values")
    return {
        "r2": float(np.mean(per)),
        "r2_per_feature": {n: float(v) for n, v in zip(feature_names, per, strict=True)},
        "mse": float(mean_squared_error(y_true, y_pred)),
    }


# Rows of the [queries, n] distance / rank arrays handled at a time: memory stays
# O(chunk * n) whatever the test set's size.
_CHUNK_ELEMENTS = 1 << 22


def _chunks(rows: np.ndarray, n: int):
    step = max(1, _CHUNK_ELEMENTS // max(n, 1))
    for lo in range(0, len(rows), step):
        yield rows[lo:lo + step]


def _queries(queries: np.ndarray | None, n: int) -> np.ndarray:
    if queries is None:
        return np.arange(n)
    queries = np.asarray(queries, np.int64)
    if queries.ndim != 1 or (len(queries) and (queries.min() < 0 or queries.max() >= n)):
        raise ValueError(f"queries: expected 1-D indices in [0, {n}), got {queries!r:.80}")
    return queries


def query_sample(n: int, max_queries: int, rng: np.random.Generator) -> np.ndarray | None:
    """Sorted indices of ``min(n, max_queries)`` queries drawn without replacement; ``None``
    (every sample a query) when ``n <= max_queries``. Every sample stays a reference, so the
    MAP@R of the drawn queries is an unbiased estimate of the all-query MAP@R."""
    if n <= max_queries:
        return None
    return np.sort(rng.choice(n, size=max_queries, replace=False))


def _ranked(emb: np.ndarray, sq: np.ndarray, rows: np.ndarray,
            groups: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(order, mate)`` ``[len(rows), n-1]``: the other samples by distance (ties: lower index
    first), the query's group-mates after every other sample; ``mate`` marks those."""
    n = emb.shape[0]
    d2 = np.maximum(sq[rows, None] - 2.0 * emb[rows] @ emb.T + sq[None, :], 0.0)
    local = np.arange(len(rows))
    if groups is not None:
        # finite but above any distance: mates sort after the references, the query last
        d2[groups[rows][:, None] == groups[None, :]] = np.finfo(np.float64).max
    d2[local, rows] = np.inf
    order = np.argsort(d2, axis=1, kind="stable")[:, : n - 1]
    if groups is None:
        return order, np.zeros(order.shape, bool)
    return order, groups[order] == groups[rows][:, None]


def neighbour_order(emb: np.ndarray, groups: np.ndarray | None = None,
                    queries: np.ndarray | None = None) -> np.ndarray:
    """``[q, n-1]``: row ``i`` holds the references of query ``queries[i]`` (default: every
    sample) sorted by distance (ties: lower index first), then ``-1`` for every excluded sample
    (those of the query's group, with ``groups``). Computed in row chunks."""
    emb = np.asarray(emb, np.float64)
    n = emb.shape[0]
    rows = _queries(queries, n)
    groups = None if groups is None else _check_groups(groups, n)
    sq = (emb**2).sum(axis=1)
    out = np.empty((len(rows), max(n - 1, 0)), np.int64)
    done = 0
    for chunk in _chunks(rows, n):
        order, mate = _ranked(emb, sq, chunk, groups)
        order[mate] = -1
        out[done:done + len(chunk)] = order
        done += len(chunk)
    return out


def _check_groups(groups: np.ndarray, n: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups: expected {n} values (one per sample), got shape {groups.shape}")
    return groups


def _ap_rows(rel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``rel`` (references ranked, relevant or not): ``(R, AP@R, hit@1)``, NaN
    where ``R = 0``."""
    r = rel.sum(axis=1)
    k = np.arange(1, rel.shape[1] + 1)
    within = k[None, :] <= r[:, None]
    precision_hits = np.where(within & rel, np.cumsum(rel, axis=1) / k, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(r > 0, precision_hits.sum(axis=1) / r, np.nan)
    hit = np.where(r > 0, rel[:, 0] if rel.shape[1] else 0.0, np.nan)
    return r, ap, hit


def _loo_rows(rel: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``[q, n-1]``: each query's AP@R with the item at each rank removed (the formulas of
    :func:`map_at_r_leave_one_out`); NaN where the query has no match left."""
    q, m = rel.shape
    rel = rel.astype(np.float64)
    rows = np.arange(q)[:, None]
    k = np.arange(1, m + 1, dtype=np.float64)
    c = np.cumsum(rel, axis=1)
    km1 = np.maximum(k - 1.0, 1.0)  # B and C are only summed from rank 2 on
    zero = np.zeros((q, 1))
    pa = np.hstack([zero, np.cumsum(rel * c / k, axis=1)])       # pa[:, t] = A_1 + ... + A_t
    pb = np.hstack([zero, np.cumsum(rel * c / km1, axis=1)])
    pbc = np.hstack([zero, np.cumsum(rel * (c - 1.0) / km1, axis=1)])
    s = np.arange(1, m + 1)[None, :]
    rr = r[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        other = (pa[rows, np.minimum(s - 1, rr)]
                 + np.where(s <= rr, pb[rows, np.minimum(rr + 1, m)] - pb[rows, s], 0.0)) / rr
        same = (pa[rows, np.clip(np.minimum(s - 1, rr - 1), 0, None)]
                + np.where(s < rr, pbc[rows, np.clip(rr, 0, m)] - pbc[rows, s], 0.0)) / (rr - 1)
    ap_without = np.where(rel > 0, same, other)
    ap_without[(rr == 0) | ((rel > 0) & (rr == 1))] = np.nan
    return ap_without


@dataclass(frozen=True)
class Retrieval:
    """One label set's retrieval results over the queries: per sample ``ap`` / ``hit`` (NaN
    for a sample that is no query or has no match) and, when asked, ``loo[j]``: MAP@R over the
    queries with sample ``j`` removed as query and as item (NaN where no query is left)."""

    ap: np.ndarray
    hit: np.ndarray
    loo: np.ndarray | None

    def metrics(self, prefix: str = "") -> dict:
        has = ~np.isnan(self.ap)
        return {
            f"{prefix}p_at_1": float(self.hit[has].mean()) if has.any() else None,
            f"{prefix}map_at_r": float(self.ap[has].mean()) if has.any() else None,
        }


def retrieve(emb: np.ndarray, label_sets: Sequence[np.ndarray],
             groups: np.ndarray | None = None, queries: np.ndarray | None = None,
             leave_one_out: bool = False) -> list[Retrieval]:
    """Retrieval of every label set in ``label_sets`` from one ranking of ``emb``.

    ``queries``: indices of the query samples (default: all; see :func:`query_sample`); every
    sample is a reference. Time O(q n log n), memory O(n) beyond the chunk, so a capped query
    count keeps it linear in ``n``.
    """
    emb = np.asarray(emb, np.float64)
    n = emb.shape[0]
    label_sets = [np.asarray(labels) for labels in label_sets]
    for labels in label_sets:
        if labels.shape != (n,):
            raise ValueError(f"labels: expected {n} values, got shape {labels.shape}")
    rows = _queries(queries, n)
    groups = None if groups is None else _check_groups(groups, n)
    ap = [np.full(n, np.nan) for _ in label_sets]
    hit = [np.full(n, np.nan) for _ in label_sets]
    sums = [np.zeros(n) for _ in label_sets]
    counts = [np.zeros(n) for _ in label_sets]
    if n >= 2:
        sq = (emb**2).sum(axis=1)
        for chunk in _chunks(rows, n):
            order, mate = _ranked(emb, sq, chunk, groups)
            for i, labels in enumerate(label_sets):
                rel = (labels[order] == labels[chunk][:, None]) & ~mate
                r, ap[i][chunk], hit[i][chunk] = _ap_rows(rel)
                if leave_one_out:
                    without = _loo_rows(rel, r)
                    ok = ~np.isnan(without)
                    sums[i] += np.bincount(order[ok], without[ok], minlength=n)
                    counts[i] += np.bincount(order[ok], minlength=n)
    out = []
    for i in range(len(label_sets)):
        loo = None
        if leave_one_out:
            with np.errstate(invalid="ignore", divide="ignore"):
                loo = np.where(counts[i] > 0, sums[i] / counts[i], np.nan)
        out.append(Retrieval(ap[i], hit[i], loo))
    return out


@overload
def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, prefix: str = "", order: np.ndarray | None = None,
    groups: np.ndarray | None = None, per_query: Literal[False] = False,
    queries: np.ndarray | None = None,
) -> dict: ...
@overload
def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, prefix: str = "", order: np.ndarray | None = None,
    groups: np.ndarray | None = None, *, per_query: Literal[True],
    queries: np.ndarray | None = None,
) -> tuple[dict, dict[str, np.ndarray]]: ...
def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, prefix: str = "", order: np.ndarray | None = None,
    groups: np.ndarray | None = None, per_query: bool = False,
    queries: np.ndarray | None = None,
) -> dict | tuple[dict, dict[str, np.ndarray]]:
    """``{prefix}p_at_1`` and ``{prefix}map_at_r``; ``None`` when no query has a match.

    ``order``: :func:`neighbour_order` of ``emb`` for the same ``queries`` (computed with the
    same ``groups`` or without), when already computed. ``groups``: [n] group of each sample
    (e.g. its image path); a query's own group is no reference. ``queries``: the query indices
    (default: every sample). ``per_query=True`` also returns ``{"ap": [n], "hit_at_1": [n]}``
    (float, NaN for a sample that is no query or has no match): the per-sample terms whose
    means are ``map_at_r`` and ``p_at_1``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if order is None:
        result = retrieve(emb, [labels], groups, queries)[0]
    else:
        rows = _queries(queries, n)
        ap, hit = np.full(n, np.nan), np.full(n, np.nan)
        if n >= 2:
            valid = order >= 0
            if groups is not None:  # also when ``order`` was computed without them
                groups = _check_groups(groups, n)
                valid &= groups[np.where(valid, order, 0)] != groups[rows][:, None]
            rel = (labels[np.where(valid, order, 0)] == labels[rows][:, None]) & valid
            # excluded samples may sit anywhere in a caller's order: rank the valid ones only
            ranked = np.argsort(~valid, axis=1, kind="stable")
            _, ap[rows], hit[rows] = _ap_rows(np.take_along_axis(rel, ranked, axis=1))
        result = Retrieval(ap, hit, None)
    out = result.metrics(prefix)
    if per_query:
        return out, {"ap": result.ap, "hit_at_1": result.hit}
    return out


def map_at_r_leave_one_out(emb: np.ndarray, labels: np.ndarray,
                           groups: np.ndarray | None = None,
                           queries: np.ndarray | None = None) -> np.ndarray:
    """[n] MAP@R of the samples with sample ``j`` removed (as query *and* as retrieved item).

    A sample enters MAP@R twice: its own AP, and the ranks it takes in the other queries'
    lists. Per-query APs miss the second part, so their spread understates how much MAP@R
    moves with the test samples drawn (about 3x in variance on planted surveys); the
    leave-one-out values give jackknife terms that hold both
    (:func:`tgmatl.evaluation.terms.map_at_r_terms`).

    Removing item ``j`` at (1-based) rank ``s`` of query ``q`` (``R`` items of q's label,
    ``c_k`` of them within the first ``k`` ranks) shifts the later ranks up by one; with
    prefix sums of ``A_k = rel_k c_k / k``, ``B_k = rel_k c_k / (k-1)``, ``C_k = rel_k / (k-1)``:

    - ``j`` of another label: ``AP' = (A[1..min(s-1, R)] + B[s+1..R+1]) / R``;
    - ``j`` of q's label: ``AP' = (A[1..min(s-1, R-1)] + (B - C)[s+1..R]) / (R-1)``, and q
      leaves MAP@R when ``R = 1``.

    ``groups``: as in :func:`retrieval_metrics`; a query's group-mates are ranked after every
    reference as irrelevant items, so removing one leaves that query's AP unchanged.
    ``queries``: the query indices (default: all); ``j`` leaves the queries too when it is one.
    O(q n log n) time, O(n) memory beyond a row chunk. NaN where no query is left.
    """
    loo = retrieve(emb, [labels], groups, queries, leave_one_out=True)[0].loo
    assert loo is not None
    return loo
