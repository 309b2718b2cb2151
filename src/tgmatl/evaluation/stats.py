"""Paired comparison of two setups over shared (repeat, fold) units, with calibrated intervals.

Every compared metric is a mean over a unit's test samples of per-sample terms
(:func:`accuracy_terms`, :func:`r2_terms`, :func:`map_at_r_terms`), so in unit ``u`` the
difference of setups A and B is ``D_u = mean_i d[u, i]`` with ``d = terms_A - terms_B``, and the
estimate is ``diff = mean_u D_u``.

What the interval is for: the expected difference of the two *procedures* (training on
``n_train`` samples, measured on new samples), over data sets drawn from the same population.
``diff`` moves with the test samples drawn *and* with the training samples drawn, and the units
share both (all folds of a repeat use one test split; the training sets of a repeat share
(k-2)/(k-1) of their samples; without resplit every unit uses one test split), so the spread of
``D_u`` over units misses most of it: it only says how much ``diff`` would move if the units
were redrawn on the *same* data. A naive t over units rejects a true null 57-95 % of the time
at alpha 0.05 in ``benchmarks/bench_calibration.py``.

Methods (``compare(..., method=...)``):

``"decomposed"`` (default; for both ``eval.resplit`` values): ``var = V_test + V_train``.

- ``V_test``, the test-sample part: ``diff = sum_i W_i e_i`` where ``e_i`` is sample ``i``'s
  weighted mean term over the units that test it and ``W_i = sum_{u tests i} 1 / (J n_u)``.
  Test samples are an i.i.d. draw, so ``V_test = n/(n-1) sum_i W_i² (e_i - diff)²`` (a
  sandwich estimate over the ``n`` distinct test samples; with one fixed test split it is
  ``var(e_i) / n``, the analytic form of a paired bootstrap over test samples). It holds the
  unit-to-unit noise too, as ``e_i`` averages over the units.
- ``V_train``, the training-sample part: to first order a unit's training set moves ``D_u`` by
  ``(1/m) sum_{j in train_u} h_j`` (``h_j``: sample ``j``'s influence, variance ``s_h²``), so
  ``diff`` carries ``sum_j v_j h_j`` with ``v_j = sum_{u trains on j} 1 / (J m_u)``, and
  ``V_train = s_h² sum_j v_j²`` (``(k-1)²/k · S_c`` with a fixed split). Within a repeat (pool of
  ``n_p`` samples, ``k`` folds of ``n_p/k``) the fold-to-fold variance of that term is
  ``(n_p/k) s_h² / m²``, so ``s_h² = S_c m² k / n_p``: the delete-a-fold jackknife. ``S_c`` is
  the *coherent* part of the fold-to-fold variance of ``D_u``: that variance minus
  ``sum_i var_u(d[u, i]) / n²``, the part that a change of training set makes by flipping
  single test samples independently (predictions near a boundary), which averages out over
  units instead of shifting ``diff``. Pooled over repeats, floored at 0.
- ``df``: Welch–Satterthwaite from ``n - 1`` (test samples) and ``sum_r (k_r - 1)`` (folds).

With ``eval.resplit: false`` ``V_test`` is the fixed test split's sampling variance and
``V_train`` the training pool's; with ``true`` the same formulas hold, with weights from the
units' actual test and training memberships. ``V_test`` is accurate (checked against fresh
test sets from a large planted survey). ``V_train`` is conservative: ``S_c`` keeps coherent
changes that are not first-order (e.g. another L2 picked by an inner CV: they average out over
units), and it is a small difference of two large, noisy terms, so the floor at 0 biases it
upward. On planted surveys (200 null data sets) the estimated variance is 1.5-2.3x the true
one, false-positive rates 0.005-0.04 at alpha 0.05. The training part cannot be told apart
from that noise with one data set's units (their cross-repeat covariances are too weak a
signal); dropping it (``V_test + S²/J``) gave 9-15 % false positives for accuracy and R².

``"nadeau_bengio"``: the corrected resampled t-test (Nadeau & Bengio 2003; for repeated k-fold,
Bouckaert & Frank 2004): ``var = (1/J + n_test/n_train) S²`` with ``S²`` the sample variance of
``D_u`` over the ``J`` units, t with ``J - 1`` df. It posits a correlation
``rho = n_test / (n_test + n_train)`` between units, derived for a train/test split redrawn per
unit. Here the 70 % test split makes ``n_test/n_train ~ 2.7`` while ``S²`` is mostly
test-sample flips, so with resplit it over-states the variance 2-8x (accuracy 7.6x: no
power); with a fixed test split it misses the test-sample variance (MAP@R 0.22x: 39 % false
positives). Kept for reference and comparison.

``"naive"``: ``var = S² / J``, t with ``J - 1`` df: the units' own spread only. For contrast.

Per-sample terms (their mean is the metric exactly, so ``mean_i (terms_A - terms_B)`` is the
metric difference):

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

:func:`holm`: Holm–Bonferroni adjusted p-values for a family of comparisons (scipy has only
Benjamini–Hochberg, ``scipy.stats.false_discovery_control``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from tgmatl.evaluation.metrics import Retrieval, retrieve

METHODS = ("decomposed", "nadeau_bengio", "naive")


@dataclass(frozen=True)
class Unit:
    """One (repeat, fold) unit: the samples the setups were measured on and trained on."""

    repeat: int
    test_ids: np.ndarray   # [n_test] ids of the test samples, in the order of the unit's terms
    train_ids: np.ndarray  # ids of the samples the setups trained on


@dataclass(frozen=True)
class PairedComparison:
    """A - B over the units: ``diff`` and its (1 - alpha) interval, two-sided ``p_value``.

    ``se`` is the standard error the interval and test use (``var_test + var_train`` for
    ``"decomposed"``; the two parts are NaN for the other methods).
    """

    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    se: float
    df: float
    n_units: int
    method: str
    alpha: float
    var_test: float = float("nan")
    var_train: float = float("nan")


# --- per-sample terms -----------------------------------------------------------------------

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


# --- comparisons ----------------------------------------------------------------------------

def compare(diffs: Sequence[np.ndarray], units: Sequence[Unit], *, alpha: float = 0.05,
            method: str = "decomposed") -> PairedComparison:
    """Compare setups A and B from ``diffs[u] = terms_A - terms_B`` on ``units[u].test_ids``.

    NaN terms are left out (a sample not measured in that unit). Within a repeat all units
    must share one test split (the protocol's design; ``"decomposed"`` relies on it).
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r}; known: {', '.join(METHODS)}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: need a value in (0, 1), got {alpha}")
    if len(diffs) != len(units):
        raise ValueError(f"diffs: {len(diffs)} arrays for {len(units)} units")
    if len(units) < 2:
        raise ValueError(f"units: need at least 2 units to estimate a variance, got {len(units)}")
    d = [np.asarray(x, np.float64) for x in diffs]
    for u, (x, unit) in enumerate(zip(d, units, strict=True)):
        if x.shape != (len(unit.test_ids),):
            raise ValueError(f"diffs[{u}]: shape {x.shape} but unit {u} has "
                             f"{len(unit.test_ids)} test samples")
        if np.all(np.isnan(x)):
            raise ValueError(f"diffs[{u}]: every term is NaN")
    unit_means = np.array([np.nanmean(x) for x in d])
    diff = float(unit_means.mean())
    n_units = len(d)
    if all(np.all(x[~np.isnan(x)] == 0.0) for x in d):
        return PairedComparison(0.0, 0.0, 0.0, 1.0, 0.0, float(n_units - 1), n_units, method,
                                alpha)
    if method == "decomposed":
        var_test, df_test = _test_variance(d, units)
        var_train, df_train = _train_variance(d, units)
        var = var_test + var_train
        df = _satterthwaite((var_test, df_test), (var_train, df_train))
    else:
        s2 = float(unit_means.var(ddof=1))
        df = float(n_units - 1)
        if method == "naive":
            var = s2 / n_units
        else:
            n_test = np.mean([np.sum(~np.isnan(x)) for x in d])
            n_train = np.mean([len(unit.train_ids) for unit in units])
            if n_train <= 0:
                raise ValueError("units: train_ids are empty; nadeau_bengio needs n_train")
            var = (1.0 / n_units + n_test / n_train) * s2
        var_test = var_train = float("nan")
    return _result(diff, var, df, n_units, method, alpha, var_test, var_train)


def _result(diff: float, var: float, df: float, n_units: int, method: str, alpha: float,
            var_test: float, var_train: float) -> PairedComparison:
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0.0:  # identical non-zero differences everywhere: no spread to test against
        return PairedComparison(diff, diff, diff, 0.0, 0.0, df, n_units, method, alpha,
                                var_test, var_train)
    t = diff / se
    half = float(sps.t.ppf(1.0 - alpha / 2.0, df)) * se
    p = float(2.0 * sps.t.sf(abs(t), df))
    return PairedComparison(diff, diff - half, diff + half, min(p, 1.0), se, float(df),
                            n_units, method, alpha, var_test, var_train)


def _satterthwaite(*parts: tuple[float, float]) -> float:
    total = sum(v for v, _ in parts)
    den = sum(v * v / df for v, df in parts if v > 0 and df > 0)
    return float(total * total / den) if den > 0 else float(max(df for _, df in parts))


def _test_variance(d: list[np.ndarray], units: Sequence[Unit]) -> tuple[float, float]:
    """Sandwich variance of ``sum_i W_i e_i`` over the test samples; df = samples - 1."""
    ids = np.concatenate([np.asarray(unit.test_ids) for unit in units])
    keys, index = np.unique(ids, return_inverse=True)
    weight = np.zeros(len(keys))
    wsum = np.zeros(len(keys))
    start = 0
    for x in d:
        idx = index[start:start + len(x)]
        start += len(x)
        ok = ~np.isnan(x)
        w = 1.0 / (len(d) * ok.sum())  # unit mean, then mean over units
        np.add.at(weight, idx[ok], w)
        np.add.at(wsum, idx[ok], w * x[ok])
    seen = weight > 0
    w, e = weight[seen], wsum[seen] / weight[seen]
    n = int(seen.sum())
    if n < 2:
        raise ValueError("units: need at least 2 distinct test samples")
    total = float(np.sum(w * e))
    return float(n / (n - 1) * np.sum(w**2 * (e - total) ** 2)), float(n - 1)


def _train_variance(d: list[np.ndarray], units: Sequence[Unit]) -> tuple[float, float]:
    """First-order training-sample variance from the folds' coherent spread (module doc)."""
    repeats = np.array([unit.repeat for unit in units])
    s_h2, dfs = [], []
    for r in np.unique(repeats):
        members = np.flatnonzero(repeats == r)
        k = len(members)
        if k < 2:
            raise ValueError(f"units: repeat {r} has one unit; 'decomposed' needs >= 2 folds "
                             "per repeat")
        ref = np.asarray(units[members[0]].test_ids)
        order0 = np.argsort(ref, kind="stable")
        rows = []
        for u in members:
            ids = np.asarray(units[u].test_ids)
            o = np.argsort(ids, kind="stable")
            if len(ids) != len(ref) or not np.array_equal(ids[o], ref[order0]):
                raise ValueError(f"units: unit {u} of repeat {r} has another test split than "
                                 f"unit {members[0]}; 'decomposed' needs one per repeat")
            rows.append(d[u][o])
        m = np.array(rows)  # [k, n] aligned by sample id
        m = m[:, ~np.any(np.isnan(m), axis=0)]
        n = m.shape[1]
        if n < 2:
            raise ValueError(f"units: repeat {r} has fewer than 2 test samples with terms")
        spread = m.mean(axis=1).var(ddof=1)
        flips = m.var(axis=0, ddof=1).sum() / n**2
        pool = len(np.unique(np.concatenate([np.asarray(units[u].train_ids) for u in members])))
        size = np.mean([len(units[u].train_ids) for u in members])
        if pool == 0 or size == 0:
            raise ValueError(f"units: repeat {r} has no training samples")
        s_h2.append((spread - flips) * size**2 * k / pool)
        dfs.append(k - 1)
    s_h2_pooled = max(float(np.average(s_h2, weights=dfs)), 0.0)
    ids = np.concatenate([np.asarray(unit.train_ids) for unit in units])
    keys, index = np.unique(ids, return_inverse=True)
    v = np.zeros(len(keys))
    start = 0
    for unit in units:
        size = len(unit.train_ids)
        np.add.at(v, index[start:start + size], 1.0 / (len(units) * size))
        start += size
    return s_h2_pooled * float(np.sum(v**2)), float(sum(dfs))


# --- multiple comparisons -------------------------------------------------------------------

def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input order (monotone, capped at 1).

    Sorted ascending ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m-j+1) p_(j))``;
    rejecting ``adj <= alpha`` controls the family-wise error rate at ``alpha``.
    """
    p = np.asarray(pvalues, np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues: need a 1-D sequence, got shape {p.shape}")
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"pvalues: need values in [0, 1], got {p.tolist()}")
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out
