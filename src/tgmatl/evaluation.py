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


def neighbour_order(emb: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """``[n, n-1]``: row ``i`` holds the references of query ``i`` sorted by distance (ties: lower
    index first), then ``-1`` for every excluded sample (those of ``i``'s group, with ``groups``).
    """
    emb = np.asarray(emb, np.float64)
    n = emb.shape[0]
    sq = (emb**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] - 2.0 * emb @ emb.T + sq[None, :], 0.0)
    excluded = np.eye(n, dtype=bool)
    if groups is not None:
        groups = _check_groups(groups, n)
        excluded |= groups[:, None] == groups[None, :]
    d2[excluded] = np.inf
    order = np.argsort(d2, axis=1, kind="stable")[:, : n - 1]  # the query itself sorts last
    if groups is not None:
        order[np.take_along_axis(excluded, order, axis=1)] = -1
    return order


def _check_groups(groups: np.ndarray, n: int) -> np.ndarray:
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups: expected {n} values (one per sample), got shape {groups.shape}")
    return groups


@overload
def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, prefix: str = "", order: np.ndarray | None = None,
    groups: np.ndarray | None = None, per_query: Literal[False] = False,
) -> dict: ...
@overload
def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, prefix: str = "", order: np.ndarray | None = None,
    groups: np.ndarray | None = None, *, per_query: Literal[True],
) -> tuple[dict, dict[str, np.ndarray]]: ...
def retrieval_metrics(
    emb: np.ndarray, labels: np.ndarray, prefix: str = "", order: np.ndarray | None = None,
    groups: np.ndarray | None = None, per_query: bool = False,
) -> dict | tuple[dict, dict[str, np.ndarray]]:
    """``{prefix}p_at_1`` and ``{prefix}map_at_r``; ``None`` when no query has a match.

    ``order``: :func:`neighbour_order` of ``emb`` (computed with the same ``groups``), when
    already computed (several label sets). ``groups``: [n] group of each sample (e.g. its image
    path); a query's own group is no reference. ``per_query=True`` also returns
    ``{"ap": [n], "hit_at_1": [n]}`` (float, NaN for a query without a match): the per-sample
    terms whose means are ``map_at_r`` and ``p_at_1``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    ap = np.full(n, np.nan)
    hit = np.full(n, np.nan)
    if n >= 2:
        if order is None:
            order = neighbour_order(emb, groups)
        valid = order >= 0
        if groups is not None:  # also when ``order`` was computed without them
            groups = _check_groups(groups, n)
            valid &= groups[np.where(valid, order, 0)] != groups[:, None]
        rel = (labels[np.where(valid, order, 0)] == labels[:, None]) & valid  # [n, n-1]
        # excluded samples may sit anywhere in a caller's order: rank the valid ones only
        ranked = np.argsort(~valid, axis=1, kind="stable")
        rel = np.take_along_axis(rel, ranked, axis=1)
        r = rel.sum(axis=1)
        for i in np.flatnonzero(r > 0):
            hits = rel[i, : r[i]]
            precision = np.cumsum(hits) / np.arange(1, r[i] + 1)
            ap[i] = (precision * hits).sum() / r[i]
            hit[i] = float(rel[i, 0])
    has = ~np.isnan(ap)
    out = {
        f"{prefix}p_at_1": float(hit[has].mean()) if has.any() else None,
        f"{prefix}map_at_r": float(ap[has].mean()) if has.any() else None,
    }
    if per_query:
        return out, {"ap": ap, "hit_at_1": hit}
    return out


def map_at_r_leave_one_out(emb: np.ndarray, labels: np.ndarray,
                           groups: np.ndarray | None = None) -> np.ndarray:
    """[n] MAP@R of the samples with sample ``j`` removed (as query *and* as retrieved item).

    A sample enters MAP@R twice: its own AP, and the ranks it takes in the other queries'
    lists. Per-query APs miss the second part, so their spread understates how much MAP@R
    moves with the test samples drawn (about 3x in variance on planted surveys); the
    leave-one-out values give jackknife terms that hold both (tgmatl.stats.map_at_r_terms).

    Removing item ``j`` at (1-based) rank ``s`` of query ``q`` (``R`` items of q's label,
    ``c_k`` of them within the first ``k`` ranks) shifts the later ranks up by one; with
    prefix sums of ``A_k = rel_k c_k / k``, ``B_k = rel_k c_k / (k-1)``, ``C_k = rel_k / (k-1)``:

    - ``j`` of another label: ``AP' = (A[1..min(s-1, R)] + B[s+1..R+1]) / R``;
    - ``j`` of q's label: ``AP' = (A[1..min(s-1, R-1)] + (B - C)[s+1..R]) / (R-1)``, and q
      leaves MAP@R when ``R = 1``.

    ``groups``: as in :func:`retrieval_metrics`; a query's group-mates are ranked after every
    reference as irrelevant items, so removing one leaves that query's AP unchanged.
    O(n²) time and memory. NaN where no query is left.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        return np.full(n, np.nan)
    order = neighbour_order(emb)  # every other sample, by distance
    rows = np.arange(n)[:, None]
    if groups is not None:
        groups = _check_groups(groups, n)
        mate = groups[order] == groups[:, None]
        ranked = np.argsort(mate, axis=1, kind="stable")  # group-mates last, otherwise as is
        order = np.take_along_axis(order, ranked, axis=1)
        mate = np.take_along_axis(mate, ranked, axis=1)
    else:
        mate = np.zeros(order.shape, bool)
    rel = ((labels[order] == labels[:, None]) & ~mate).astype(np.float64)  # rank k = col + 1
    r = rel.sum(axis=1).astype(np.int64)
    k = np.arange(1, n, dtype=np.float64)
    c = np.cumsum(rel, axis=1)
    km1 = np.maximum(k - 1.0, 1.0)  # B and C are only summed from rank 2 on
    zero = np.zeros((n, 1))
    pa = np.hstack([zero, np.cumsum(rel * c / k, axis=1)])       # pa[:, t] = A_1 + ... + A_t
    pb = np.hstack([zero, np.cumsum(rel * c / km1, axis=1)])
    pbc = np.hstack([zero, np.cumsum(rel * (c - 1.0) / km1, axis=1)])
    s = np.broadcast_to(np.arange(1, n), (n, n - 1))
    rr = r[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        other = (pa[rows, np.minimum(s - 1, rr)]
                 + np.where(s <= rr, pb[rows, np.minimum(rr + 1, n - 1)] - pb[rows, s], 0.0)) / rr
        same = (pa[rows, np.clip(np.minimum(s - 1, rr - 1), 0, None)]
                + np.where(s < rr, pbc[rows, np.clip(rr, 0, n - 1)] - pbc[rows, s], 0.0)) / (rr - 1)
    ap_without = np.where(rel > 0, same, other)
    ap_without[(r[:, None] == 0) | ((rel > 0) & (rr == 1))] = np.nan
    table = np.full((n, n), np.nan)  # table[q, j]: AP of query q without item j
    table[rows, order] = ap_without
    counts = np.sum(~np.isnan(table), axis=0)
    sums = np.nansum(table, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
