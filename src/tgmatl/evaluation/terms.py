"""Per-sample terms of the compared metrics: their mean over a unit's test samples is the
unit's metric exactly, so ``mean_i (terms_A - terms_B)`` is the metric difference the paired
tests (:mod:`tgmatl.evaluation.stats`) work on. The train stage writes the MAP@R terms with its
predictions; the tests themselves live in ``stats`` (the report's, not the train stage's, code).

- accuracy: ``1[pred_i = y_i]``;
- box R² (uniform average over ``K`` features, ``SST_k`` of the unit's test truth):
  ``R² = (1/K) sum_k (1 - SSE_k / SST_k)`` with ``SSE_k = sum_i se_ik``, so
  ``R² = mean_i u_i`` with ``u_i = 1 - (n/K) sum_k se_ik / SST_k``. Two setups share the truth,
  hence ``SST_k``: ``ΔR² = mean_i (u_A,i - u_B,i) = mean_i c_i`` with
  ``c_i = -(n/K) sum_k (se_A,ik - se_B,ik) / SST_k``. (``SST_k`` is taken as fixed: the same for
  both setups, and it varies little with the draw.)
- MAP@R: a test sample is a query *and* an item in the other queries' lists, so the spread of
  per-query APs understates the test-sample variance (3.2x in variance on planted surveys).
  The terms are jackknife values ``t_j = MAP + (n-1)(mean_l MAP_(-l) - MAP_(-j))``, with
  ``MAP_(-j)`` the MAP@R without sample ``j``
  (:func:`tgmatl.evaluation.metrics.map_at_r_leave_one_out`):
  their mean is MAP@R and ``var(t)/n`` the jackknife variance.
"""

from __future__ import annotations

import numpy as np

from tgmatl.evaluation.metrics import Retrieval, retrieve


def accuracy_terms(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """[n] 1.0 where the prediction is right: their mean is the accuracy."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_pred: shape {y_pred.shape} does not match y_true {y_true.shape}")
    return (y_true == y_pred).astype(np.float64)


def r2_terms(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """[n] ``u_i = 1 - (n/K) sum_k (y_ik - p_ik)² / SST_k``: their mean is R² averaged over
    the K features (``sklearn.metrics.r2_score``, uniform average). See the module doc."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    y_true = y_true.reshape(len(y_true), -1)
    y_pred = y_pred.reshape(len(y_pred), -1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_pred: shape {y_pred.shape} does not match y_true {y_true.shape}")
    n, k = y_true.shape
    sst = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    if np.any(sst <= 0):
        raise ValueError(f"y_true: feature(s) {np.flatnonzero(sst <= 0).tolist()} are constant "
                         "on these samples; R² is undefined")
    return 1.0 - (n / k) * ((y_true - y_pred) ** 2 / sst).sum(axis=1)


def map_at_r_terms(emb: np.ndarray, labels: np.ndarray,
                   groups: np.ndarray | None = None,
                   queries: np.ndarray | None = None) -> np.ndarray:
    """[n] jackknife terms of MAP@R (see the module doc): their mean is MAP@R. ``groups``: as
    in :func:`tgmatl.evaluation.metrics.retrieval_metrics` (no reference from the query's own
    image);
    ``queries``: the query indices (default: all; every sample is an item either way).
    NaN for every sample when MAP@R is undefined or no query survives a removal."""
    return jackknife_map_terms(retrieve(emb, [labels], groups, queries, leave_one_out=True)[0])


def jackknife_map_terms(result: Retrieval) -> np.ndarray:
    """:func:`map_at_r_terms` of a :func:`tgmatl.evaluation.metrics.retrieve` result (with
    ``leave_one_out``), so several label sets share one ranking."""
    if result.loo is None:
        raise ValueError("result: computed without leave_one_out")
    n = len(result.loo)
    full = result.metrics()["map_at_r"]
    if full is None or np.any(np.isnan(result.loo)):
        return np.full(n, np.nan)
    return full + (n - 1) * (result.loo.mean() - result.loo)
