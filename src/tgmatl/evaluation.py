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
    rel = labels[order] == labels[:, None]  # [n, n-1]
    r = rel.sum(axis=1)
    queries = np.flatnonzero(r > 0)
    if len(queries) == 0:
        return {f"{prefix}p_at_1": None, f"{prefix}map_at_r": None}
    p1 = rel[queries, 0].mean()
    aps = []
    for i in queries:
        hits = rel[i, : r[i]]
        precision = np.cumsum(hits) / np.arange(1, r[i] + 1)
        aps.append((precision * hits).sum() / r[i])
    return {f"{prefix}p_at_1": float(p1), f"{prefix}map_at_r": float(np.mean(aps))}
