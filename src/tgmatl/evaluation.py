"""Test metrics: classification, box-feature regression, retrieval in the embedding space.

Retrieval metrics (Musgrave et al., "A Metric Learning Reality Check", 2020) use Euclidean
distance in the given space (callers pass L2-normalised embeddings), exclude the query itself,
and break distance ties by sample index. A query whose label no other sample shares has no
correct answer and is left out of both metrics.

- precision@1: share of queries whose nearest other sample has the query's label.
- MAP@R: for a query with ``R`` other samples of its label, the mean over ``k = 1..R`` of
  ``P(k) * rel(k)``, where ``rel(k)`` is 1 when the ``k``-th nearest sample shares the label and
  ``P(k)`` is the precision of the first ``k``; averaged over queries.

Hand-built example (1-D points, label A at 0, 1.2, 3 and label B at 2, 10, 11; R = 2 for all)::

    query 0   (A): nearest 1.2 A, 2 B        -> AP = (1/1)/2           = 0.5,  hit@1
    query 1.2 (A): nearest 2 B, 0 A          -> AP = (0 + 1/2)/2       = 0.25
    query 3   (A): nearest 2 B, 1.2 A        -> AP = (0 + 1/2)/2       = 0.25
    query 2   (B): nearest 1.2 A, 3 A        -> AP = 0
    query 10  (B): nearest 11 B, 3 A         -> AP = 0.5,              hit@1
    query 11  (B): nearest 10 B, 3 A         -> AP = 0.5,              hit@1
    MAP@R = (0.5 + 0.25 + 0.25 + 0 + 0.5 + 0.5) / 6 = 1/3;  precision@1 = 3/6 = 0.5
"""

from __future__ import annotations

from collections.abc import Sequence

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


def neighbour_order(emb: np.ndarray) -> np.ndarray:
    """Row ``i``: the other samples sorted by distance to ``i`` (ties: lower index first)."""
    emb = np.asarray(emb, np.float64)
    sq = (emb**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] - 2.0 * emb @ emb.T + sq[None, :], 0.0)
    np.fill_diagonal(d2, np.inf)
    order = np.argsort(d2, axis=1, kind="stable")
    return order[:, :-1]  # the last column is the query itself (distance inf)


def average_precision_at_r(emb: np.ndarray, labels: np.ndarray,
                           order: np.ndarray | None = None) -> np.ndarray:
    """[n] per-query AP@R (MAP@R is their mean); NaN for a query whose label no other sample has."""
    labels = np.asarray(labels)
    n = len(labels)
    ap = np.full(n, np.nan)
    if n < 2:
        return ap
    if order is None:
        order = neighbour_order(emb)
    rel = labels[order] == labels[:, None]  # [n, n-1]
    r = rel.sum(axis=1)
    rank = np.arange(1, n)
    precision = np.cumsum(rel, axis=1) / rank
    within = rank[None, :] <= r[:, None]  # only the first R_i neighbours count
    has = r > 0
    ap[has] = (precision * rel * within).sum(axis=1)[has] / r[has]
    return ap


def retrieval_metrics(emb: np.ndarray, labels: np.ndarray, prefix: str = "",
                      order: np.ndarray | None = None) -> dict:
    """``{prefix}p_at_1`` and ``{prefix}map_at_r``; ``None`` when no query has a match.

    ``order``: :func:`neighbour_order` of ``emb``, when already computed (several label sets).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        return {f"{prefix}p_at_1": None, f"{prefix}map_at_r": None}
    if order is None:
        order = neighbour_order(emb)
    ap = average_precision_at_r(emb, labels, order)
    queries = np.flatnonzero(~np.isnan(ap))
    if len(queries) == 0:
        return {f"{prefix}p_at_1": None, f"{prefix}map_at_r": None}
    p1 = (labels[order[queries, 0]] == labels[queries]).mean()
    return {f"{prefix}p_at_1": float(p1), f"{prefix}map_at_r": float(np.mean(ap[queries]))}


def map_at_r_leave_one_out(emb: np.ndarray, labels: np.ndarray,
                           order: np.ndarray | None = None) -> np.ndarray:
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

    O(n²) time and memory. NaN where no query is left.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        return np.full(n, np.nan)
    if order is None:
        order = neighbour_order(emb)
    rel = (labels[order] == labels[:, None]).astype(np.float64)  # [n, n-1], rank k = col + 1
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
    rows = np.arange(n)[:, None]
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
