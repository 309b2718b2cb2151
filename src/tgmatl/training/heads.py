"""Linear probe heads (``heads.kind: probe``): scikit-learn models on the frozen embedding.

Both probes standardise the embedding on their training samples (the statistics are frozen and
reused on new samples), then fit an L2-penalised linear model whose strength ``α`` is chosen
from ``heads.l2_grid`` on the training samples only:

- :class:`ProbeClassifier`: multinomial logistic regression (``C = 1/α``), ``α`` chosen by
  shuffled, seeded, stratified ``inner_folds``-fold CV on the **log-loss**. Accuracy is a poor
  selection score here: an inner validation fold of a demo-sized fold holds ~12 samples, so
  accuracy moves in steps of ~0.08 and several strengths tie (ties go to the first grid value);
  the log-loss is continuous and proper. On demo-sized planted folds accuracy-scored selection
  scattered ``α`` over 0.01..100 and lost 0.010 test accuracy on average (sd 0.018 over 12
  folds; ``benchmarks/bench_heads.py``). scikit-learn moves ``LogisticRegressionCV``'s default
  to ``neg_log_loss`` in 1.11.
- :class:`ProbeRegressor`: ridge regression on all box features at once, one ``α`` for all
  targets (the leave-one-out squared error averaged over samples and targets), chosen by
  efficient leave-one-out (``RidgeCV``'s closed form, exact for ridge): no split to seed and the
  least wasteful use of ~60 samples. One shared ``α`` beat one per target by 0.027 R² on
  demo-sized planted folds (the per-target choice is noisier).

``α`` follows scikit-learn's scale: it weighs ``½‖w‖²`` against the loss *summed* over the
training samples (``C = 1/α`` for the logistic model). The scaler is fitted once on all
training samples, also for the inner CV (it sees no labels). The inner CV splits sample by
sample: samples sharing an image or a scene may fall on both sides of an inner split.

A class with fewer training samples than ``inner_folds`` cannot be stratified over the inner
folds. The classifier then uses as many folds as that class has samples (at least 2), records
why in ``fallback_`` and logs a warning; a class with a single training sample cannot be
cross-validated at all and raises :class:`~tgmatl.errors.InputError` naming
``heads.inner_folds``.

Both are deterministic: the solvers (newton-cg, the ridge closed form) have no randomness and
the inner folds are drawn from ``seed``. newton-cg rather than scikit-learn's default lbfgs:
the same optima, several times faster on these few-sample, many-feature folds.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from tgmatl.errors import InputError

log = logging.getLogger(__name__)

# The weak end of the grid on linearly separable folds can need more than scikit-learn's default
# 100 iterations.
MAX_ITER = 2000
DEFAULT_L2_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # params.yaml heads.l2_grid


# --- validation -------------------------------------------------------------------------------
def check_l2_grid(l2_grid: Sequence[float]) -> np.ndarray:
    """``l2_grid`` as a float array; a non-empty sequence of finite positive numbers."""
    if isinstance(l2_grid, (str, bytes)) or not isinstance(l2_grid, (Sequence, np.ndarray)):
        raise TypeError(f"l2_grid: need a sequence of positive numbers, got {l2_grid!r}")
    vals = list(l2_grid)
    if not vals:
        raise ValueError("l2_grid: need at least one L2 strength, got an empty grid")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"l2_grid: need numbers, got {v!r} in {vals}")
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"l2_grid: need finite strengths > 0, got {v!r} in {vals}")
    return np.asarray(vals, np.float64)


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: need an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: need >= {minimum}, got {value}")
    return int(value)


def _check_x(x: object, n_features: int | None = None) -> np.ndarray:
    """``x`` as a finite float64 ``[n, d]`` array (``d == n_features`` when given)."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"x: need a non-empty 2-D array [samples, features], got shape "
                         f"{arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"x: fitted on {n_features} features, got {arr.shape[1]}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"x: {int(bad.sum())} non-finite value(s), first at sample {i}, "
                         f"feature {j} ({arr[i, j]})")
    return arr


# --- classifier -------------------------------------------------------------------------------
def _neg_log_loss(estimator, x: np.ndarray, y: np.ndarray) -> float:
    """``-log_loss`` as a scorer, computed directly: sklearn's ``neg_log_loss`` scorer
    re-validates its arguments on each of the ~20 inner fits a probe makes, which was half of
    a probe's time. Same value (probabilities clipped to [1e-15, 1], labels all in
    ``estimator.classes_``, which stratified inner folds guarantee)."""
    proba = estimator.predict_proba(x)
    idx = np.searchsorted(estimator.classes_, y)
    return float(np.mean(np.log(np.clip(proba[np.arange(len(y)), idx], 1e-15, 1.0))))


class ProbeClassifier(ClassifierMixin, BaseEstimator):
    """Standardised multinomial logistic regression, L2 strength by inner stratified CV.

    Parameters are checked on construction and again by :meth:`fit` (``set_params`` / ``clone``
    can change them). Fitted attributes: ``classes_``, ``l2_`` (chosen ``α``, from
    ``l2_grid``), ``inner_folds_used_``, ``fallback_`` (why fewer inner folds were used, else
    ``None``), ``cv_log_loss_`` (mean inner-CV log-loss per grid value, grid order), ``scaler_``
    and ``model_`` (the ``LogisticRegression`` refit on all training samples at ``l2_``).
    """

    def __init__(self, l2_grid: Sequence[float] = DEFAULT_L2_GRID,
                 inner_folds: int = 5, seed: int = 0):
        self.l2_grid = l2_grid
        self.inner_folds = inner_folds
        self.seed = seed
        self._check_params()

    def _check_params(self) -> tuple[np.ndarray, int, int]:
        return (check_l2_grid(self.l2_grid), _check_int("inner_folds", self.inner_folds, 2),
                _check_int("seed", self.seed, 0))

    def fit(self, x: np.ndarray, y: np.ndarray) -> ProbeClassifier:
        """Fit on the training samples ``x`` ``[n, d]`` with class labels ``y`` ``[n]``."""
        grid, k, seed = self._check_params()
        x = _check_x(x)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y: need one label per sample of x ({len(x)}), got shape {y.shape}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y: labels must be finite")
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise InputError(f"y: need >= 2 classes among the training samples, got "
                             f"{classes.tolist()}")
        smallest = int(counts.min())
        rare = classes.tolist()[int(counts.argmin())]
        self.fallback_ = None
        if smallest < 2:
            raise InputError(
                f"heads.inner_folds={k}: class {rare!r} has {smallest} training sample; "
                f"stratified inner CV needs >= 2 per class (class counts "
                f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))})")
        if smallest < k:
            self.fallback_ = (f"heads.inner_folds={k}: class {rare!r} has only {smallest} "
                              f"training samples; inner CV used {smallest} folds")
            log.warning("probe classifier: %s", self.fallback_)
            k = smallest
        self.inner_folds_used_ = k

        self.scaler_ = StandardScaler().fit(x)
        z = self.scaler_.transform(x)
        # ascending C (strong penalty first): each fit warm-starts from the previous one
        order = np.argsort(-grid, kind="stable")
        cv = LogisticRegressionCV(
            Cs=list(1.0 / grid[order]), l1_ratios=(0.0,), scoring=_neg_log_loss,
            cv=StratifiedKFold(k, shuffle=True, random_state=seed), solver="newton-cg",
            max_iter=MAX_ITER, refit=False, use_legacy_attributes=False)
        with warnings.catch_warnings():
            # the weak end of the grid may stop short on separable inner folds; its (poor)
            # log-loss is still a fair score, and the refit below warns on its own
            warnings.simplefilter("ignore", ConvergenceWarning)
            cv.fit(z, y)
        scores = np.asarray(cv.scores_).reshape(-1, len(grid)).mean(axis=0)  # [n_cs]
        self.cv_log_loss_ = [float(-scores[np.flatnonzero(order == i)[0]])
                             for i in range(len(grid))]
        # first best in ascending-C order: on a tie the stronger penalty wins
        self.l2_ = float(grid[order][int(np.argmax(scores))])
        self.model_ = LogisticRegression(C=1.0 / self.l2_, l1_ratio=0.0, solver="newton-cg",
                                         max_iter=MAX_ITER).fit(z, y)
        self.classes_ = self.model_.classes_
        self.n_features_in_ = x.shape[1]
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits ``[n, n_classes]`` (``[n]`` for two classes, scikit-learn's convention)."""
        check_is_fitted(self, "model_")
        return self.model_.decision_function(
            self.scaler_.transform(_check_x(x, self.n_features_in_)))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities ``[n, n_classes]``, columns in ``classes_`` order."""
        check_is_fitted(self, "model_")
        return self.model_.predict_proba(
            self.scaler_.transform(_check_x(x, self.n_features_in_)))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


# --- regressor --------------------------------------------------------------------------------
class ProbeRegressor(RegressorMixin, BaseEstimator):
    """Standardised multi-output ridge regression, L2 strength by efficient leave-one-out.

    Fitted attributes: ``l2_`` (chosen ``α``, one for all targets), ``cv_mse_`` (leave-one-out
    mean squared error per grid value, grid order), ``scaler_``, ``coef_``, ``intercept_``.
    The leave-one-out errors of every ``α`` and target, and the refit, come from one
    eigendecomposition (:func:`ridge_loo`, ``RidgeCV``'s closed form).
    """

    def __init__(self, l2_grid: Sequence[float] = DEFAULT_L2_GRID):
        self.l2_grid = l2_grid
        check_l2_grid(l2_grid)

    def fit(self, x: np.ndarray, y: np.ndarray) -> ProbeRegressor:
        """Fit on ``x`` ``[n, d]`` and targets ``y`` ``[n]`` or ``[n, k]``."""
        grid = check_l2_grid(self.l2_grid)
        x = _check_x(x)
        y_arr = np.asarray(y, dtype=np.float64)
        if y_arr.ndim not in (1, 2) or len(y_arr) != len(x):
            raise ValueError(f"y: need [samples] or [samples, targets] with {len(x)} samples, "
                             f"got shape {y_arr.shape}")
        if not np.isfinite(y_arr).all():
            raise ValueError("y: targets must be finite")
        if len(x) < 3:
            raise InputError(f"x: leave-one-out needs >= 3 training samples, got {len(x)}")
        self.scaler_ = StandardScaler().fit(x)
        z = self.scaler_.transform(x)
        flat = y_arr.ndim == 1
        targets = y_arr[:, None] if flat else y_arr
        cv, pick, (self.coef_, self.intercept_) = ridge_loo(z, targets, grid)
        self.l2_ = float(grid[pick])
        self.cv_mse_ = [float(v) for v in cv]
        if flat:
            self.coef_, self.intercept_ = self.coef_[:, 0], self.intercept_[0]
        self.model_ = True  # fitted (check_is_fitted)
        self.n_features_in_ = x.shape[1]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "model_")
        z = self.scaler_.transform(_check_x(x, self.n_features_in_))
        return z @ self.coef_ + self.intercept_


def _ridge_spectrum(z: np.ndarray, y: np.ndarray):
    """(``A`` [n, r], eigenvalues [r], ``back`` [d, r] or None, centred targets, means): the
    centred ``z`` as ``A = U·S`` from the smaller Gram matrix's eigendecomposition (``ZᵀZ`` when
    ``n >= d``, else ``ZZᵀ``), so that every ``α`` is a rescaling of one decomposition."""
    zm, ym = z.mean(axis=0), y.mean(axis=0)
    zc, yc = z - zm, y - ym
    if len(z) >= z.shape[1]:
        lam, v = np.linalg.eigh(zc.T @ zc)
        return zc @ v, np.maximum(lam, 0.0), v, yc, zm, ym, zc
    lam, u = np.linalg.eigh(zc @ zc.T)
    lam = np.maximum(lam, 0.0)
    return u * np.sqrt(lam), lam, None, yc, zm, ym, zc


def ridge_loo(z: np.ndarray, y: np.ndarray, grid: np.ndarray
              ) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray]]:
    """Leave-one-out mean squared error of ridge (unpenalised intercept) for every ``α`` of
    ``grid`` and every target column at once, from one eigendecomposition: the hat matrix is
    ``11ᵀ/n + A diag(1/(λ+α)) Aᵀ`` (``A = U·S`` of the centred ``z``), so each sample's LOO
    residual is ``(y_i - ŷ_i) / (1 - h_ii)`` (``RidgeCV``'s closed form). Returns ([grid]
    mean over samples and targets, index of the first smallest, (coef [d, k], intercept [k])
    at that ``α``)."""
    n = len(z)
    a, lam, v, yc, zm, ym, zc = _ridge_spectrum(z, y)
    aty = a.T @ yc
    a2 = a * a
    out = np.empty(len(grid))
    for k, alpha in enumerate(grid):
        inv = np.where(lam + alpha > 0, 1.0 / (lam + alpha), 0.0)
        resid = yc - a @ (inv[:, None] * aty)
        h = 1.0 / n + a2 @ inv
        out[k] = float(np.mean((resid / (1.0 - h)[:, None]) ** 2))
    pick = int(np.argmin(out))
    inv = 1.0 / (lam + grid[pick])
    if v is not None:   # A = Z V: coef = V diag(1/(λ+α)) Aᵀ y
        coef = v @ (inv[:, None] * aty)
    else:               # A = U S: coef = Zᵀ U diag(1/(λ+α)) Uᵀ y = Zᵀ (A/λ) ...; via U
        u = np.divide(a, np.sqrt(lam), out=np.zeros_like(a), where=lam > 0)
        coef = zc.T @ (u @ (inv[:, None] * (u.T @ yc)))
    return out, pick, (coef, ym - zm @ coef)


__all__ = ["DEFAULT_L2_GRID", "ProbeClassifier", "ProbeRegressor", "check_l2_grid"]
