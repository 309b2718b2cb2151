"""Paired comparison of two setups over shared (repeat, fold) units, with calibrated intervals.

Every compared metric is a mean over a unit's test samples of per-sample terms
(:mod:`tgmatl.evaluation.terms`), so in unit ``u`` the
difference of setups A and B is ``D_u = mean_i d[u, i]`` with ``d = terms_A - terms_B``, and the
estimate is ``diff = mean_u D_u``.

Why not the units' own spread: ``diff`` moves with the test scenes drawn *and* with the
training samples drawn, and the units share both (all folds of a repeat use one test split; the
training sets of a repeat share (k-2)/(k-1) of their samples), so the spread of ``D_u`` over
units only says how much ``diff`` would move if the units were redrawn on the *same* data (a
naive t over units rejects a true null most of the time).

Methods (``compare(..., method=...)``):

``"decomposed"`` (default): ``var = V_test + V_train + V_seed``.

- ``V_test``, the test-sample part: ``diff = sum_i W_i e_i`` where ``e_i`` is sample ``i``'s
  weighted mean term over the units that test it and ``W_i = sum_{u tests i} 1 / (J n_u)``.
  Test *scenes* are the independent draw (a herd shares background, light and appearance;
  ``split.group: scene`` keeps them whole), so ``V_test = G/(G-1) sum_g (sum_{i in g} W_i
  (e_i - diff))²``, a cluster-robust sandwich over the ``G`` scenes of the test samples
  (``groups``; without it every sample is its own scene), df ``G - 1``.
- ``V_seed``, the seed part: with seed twins (every unit trained twice), twin 0 minus twin 1
  per unit measures what a change of seed alone does. Its coherent part (a whole unit moves;
  ``sigma²_c = (mean_u Delta_u² - mean_u sum_g (sum_{i in g} delta_ui)² / n_u²) / 2`` per
  twin, the flips of single scenes left to ``V_test``, which holds them) is independent across
  units. Where both sides average their twins and twin ``t`` of A shares its seed with twin
  ``t`` of B (the pipeline seeds a unit's twin, not its setup: same initial weights, same
  batches), ``delta`` is the *difference's* twin 0 - twin 1, ``(A_0 - B_0) - (A_1 - B_1)``:
  two setups started alike move together (planted surveys: seed deltas of CLTL and MATL
  correlate 0.74 on accuracy, 0.87 on class MAP@R, 0.95 on box R²), so the difference carries
  a fraction of each side's seed noise, and summing the sides' would overstate ``V_seed`` and,
  worse, take too much out of ``V_train``. Unbiased for any correlation, 0 included:
  ``V_seed = sigma²_c / T / J`` (``T``: twins averaged). With ``T > 2`` twins each of the
  ``T - 1`` uncorrelated twin contrasts (:func:`twin_contrasts`; the first is twin 0 - twin 1)
  measures ``sigma²_c`` and their estimates are averaged, not twin 0 - twin 1's alone. Sides
  measured apart (the A/A control's twin 0 against twin 1 of one setup): ``V_seed =
  sum_sides sigma²_c / T_side / J``.
- ``V_train``, the training-set part: to first order a unit's training set moves ``D_u`` by
  ``(1/m) sum_{j in train_u} h_j`` (``h_j``: sample ``j``'s influence), so ``diff`` carries
  ``sum_j v_j h_j`` with ``v_j = sum_{u trains on j} 1 / (J m_u)``. Where the folds keep scenes
  whole, a scene moves as one (``H_g = sum_{j in g} h_j``, variance ``s_H²``) and
  ``V_train = s_H² sum_g v_g²``. Within a repeat (``G_p`` scenes in the pool, ``k`` folds) the
  fold-to-fold variance of that term is ``(G_p/k) s_H² / m²``: the delete-a-fold jackknife
  gives ``s_H² = S_c m² k / G_p``. ``S_c`` is the *coherent* fold-to-fold variance of ``D_u``
  less the seed noise: that variance minus ``sum_g var_u(sum_{i in g} d[u, i]) / n²``
  (single test scenes flipping, which average out and are in ``V_test``) minus the seed
  part's ``sigma²_c / T`` (per unit), pooled over repeats, floored at 0. Without twins the seed
  noise cannot be told from training influence and stays in ``S_c``, scaled like it
  (~(k-1)²/k: conservative).
- With ``eval.resplit: true`` each repeat has its own test split, so a sample can be a test
  sample of one repeat and a training sample of another; how its two roles covary is not
  estimable from one survey. Each repeat alone is a one-split experiment with the three parts
  above, and ``diff`` is the mean of the repeats' differences (weighted by their units), so the
  repeats' standard errors are added at correlation 1: ``se = sum_r w_r se_r``, a bound for
  any covariance between them (Minkowski), df the smallest repeat's. (Adding the pooled test
  and training parts at correlation 1 instead failed where the training part's estimate sat
  at its floor of 0, which a repeat's 7 df leave it often: the bound then added nothing and
  the symmetric nulls of the pipeline's calibration came out at 0.09–0.12; bounding whole
  repeats also bounds their test parts, which is what carries such data sets.) It costs
  power; with a fixed test split (the default) the parts are independent.
- ``df``: Welch–Satterthwaite over the parts (``G - 1``, ``sum_r (k_r - 1)``, ``J``).

What the interval is for: the expected difference of the two *procedures* (trained on
``m`` samples of such surveys, with a random seed), on new scenes of the same population: both
the survey's test scenes and its training pool are draws from it. ``V_train`` is the weak
part: one survey's folds see only the 1/(k-1) of the training sets they do not share, so its
estimate is noisy, and the floor makes it conservative on average (calibration:
``benchmarks/bench_calibration.py``).

``"nadeau_bengio"``: the corrected resampled t-test (Nadeau & Bengio 2003; for repeated k-fold,
Bouckaert & Frank 2004): ``var = (1/J + n_test/n_train) S²`` with ``S²`` the sample variance of
``D_u`` over the ``J`` units, t with ``J - 1`` df. It posits a correlation
``rho = n_test / (n_test + n_train)`` between units, derived for a train/test split redrawn per
unit. Here the 70 % test split makes ``n_test/n_train ~ 2.7`` while ``S²`` is mostly
test-sample flips, so with resplit it over-states the variance 2-8x (accuracy 7.6x: no
power); with a fixed test split it misses the test-sample variance (MAP@R 0.22x: 39 % false
positives). Kept for reference and comparison.

``"naive"``: ``var = S² / J``, t with ``J - 1`` df: the units' own spread only. For contrast.

:func:`holm`: Holm–Bonferroni adjusted p-values for a family of comparisons (scipy has only
Benjamini–Hochberg, ``scipy.stats.false_discovery_control``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

METHODS = ("decomposed", "nadeau_bengio", "naive")


@dataclass(frozen=True)
class Unit:
    """One (repeat, fold) unit: the samples the setups were measured on and trained on."""

    repeat: int
    test_ids: np.ndarray   # [n_test] ids of the test samples, in the order of the unit's terms
    train_ids: np.ndarray  # ids of the samples the setups trained on


@dataclass(frozen=True)
class SeedNoise:
    """Seed twins' differences: ``deltas[u]`` = the per-sample terms of twin 0 minus those of
    twin 1 on unit ``u``'s test samples (the order of ``diffs[u]``), of one side or of the
    difference itself (A's minus B's, twins paired by seed), and ``twins``: how many twins the
    compared terms average (1: a single twin, as in an A/A control of twin 0 against
    twin 1). With more than two twins ``deltas[u]`` may be ``[n, T - 1]``: the columns are
    uncorrelated contrasts of the twins, each with the variance of twin 0 - twin 1
    (:func:`twin_contrasts`), and the seed part averages them all."""

    deltas: Sequence[np.ndarray]
    twins: int

    @classmethod
    def of_difference(cls, deltas_a: Sequence[np.ndarray], deltas_b: Sequence[np.ndarray],
                      twins: int) -> SeedNoise:
        """The difference's own twin deltas ``(A_0 - B_0) - (A_1 - B_1)`` from each side's,
        for sides whose twin ``t`` share a seed and that average ``twins`` twins each."""
        return cls([np.asarray(x) - np.asarray(y)
                    for x, y in zip(deltas_a, deltas_b, strict=True)], twins)


@dataclass(frozen=True)
class PairedComparison:
    """A - B over the units: ``diff`` and its (1 - alpha) interval, two-sided ``p_value``.

    ``se`` is the standard error the interval and test use (``var_test + var_train +
    var_seed`` for ``"decomposed"``; the parts are NaN for the other methods). ``n_groups``:
    the independent test groups (scenes) ``var_test`` is clustered on (with ``resplit_bound``,
    the largest repeat's). ``resplit_bound``: some sample is a test sample of one unit and a
    training sample of another, so the repeats were added at correlation 1 and the parts are
    reported in the repeats' proportions (their sum is ``se²``).
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
    var_seed: float = float("nan")
    n_groups: int = 0
    resplit_bound: bool = False

    def p_greater(self, margin: float = 0.0) -> float:
        """One-sided p of ``H1: A - B > margin`` (t with the comparison's df)."""
        return _one_sided(self.diff - margin, self.se, self.df)

    def p_less(self, margin: float = 0.0) -> float:
        """One-sided p of ``H1: A - B < margin``."""
        return _one_sided(margin - self.diff, self.se, self.df)

    def bound(self, level: float, side: str) -> float:
        """One-sided ``level`` confidence bound: ``side`` ``lower`` or ``upper``."""
        q = float(sps.t.ppf(level, self.df)) * self.se if self.se > 0 else 0.0
        return self.diff - q if side == "lower" else self.diff + q

    def mde(self, power: float = 0.8) -> float:
        """The smallest true difference this comparison detects with ``power`` at its two-sided
        ``alpha`` (same standard error and df)."""
        return minimum_detectable_effect(self.se, self.df, self.alpha, power)


def twin_contrasts(values: np.ndarray) -> np.ndarray:
    """``[n, T]`` per-sample terms of ``T >= 2`` seed twins -> ``[n, T - 1]`` Helmert
    contrasts scaled like twin 0 - twin 1: column ``j - 1`` is ``(x_j - mean(x_0 .. x_{j-1}))
    · sqrt(2j / (j + 1))`` with the sign that makes column 0 exactly ``x_0 - x_1``. For twins
    of equal variance ``s²`` each column has variance ``2 s²`` and the columns are
    uncorrelated, so ``T - 1`` of them measure the seed noise where twin 0 - twin 1 alone
    measures it once."""
    x = np.asarray(values, np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"values: need [n, twins >= 2], got shape {x.shape}")
    j = np.arange(1, x.shape[1])
    prior = np.cumsum(x, axis=1)[:, :-1] / j  # mean of twins 0 .. j-1
    return (prior - x[:, 1:]) * np.sqrt(2.0 * j / (j + 1.0))


def _one_sided(excess: float, se: float, df: float) -> float:
    if se == 0.0:
        return 0.0 if excess > 0 else 1.0
    return float(sps.t.sf(excess / se, df))


def minimum_detectable_effect(se: float, df: float, alpha: float, power: float = 0.8) -> float:
    """``(t_{1-alpha/2} + t_{power}) · se``: the true difference a two-sided level-``alpha``
    t test with this standard error rejects with probability ``power``."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power: need a value in (0, 1), got {power}")
    return float((sps.t.ppf(1.0 - alpha / 2.0, df) + sps.t.ppf(power, df)) * se)


# --- comparisons ----------------------------------------------------------------------------

def compare(diffs: Sequence[np.ndarray], units: Sequence[Unit], *, alpha: float = 0.05,
            method: str = "decomposed", groups: Mapping[Any, Any] | None = None,
            seed_noise: SeedNoise | tuple[SeedNoise, SeedNoise] | None = None
            ) -> PairedComparison:
    """Compare setups A and B from ``diffs[u] = terms_A - terms_B`` on ``units[u].test_ids``.

    ``groups``: sample id -> its independent group (the scene); the test part is clustered on
    it (default: every sample its own group). ``seed_noise``: the difference's twin deltas
    (one :class:`SeedNoise`: twins paired by seed), or A's and B's apart (a pair; module
    doc); without it, seed noise cannot be told from training-set influence and counts as the
    latter (conservative). NaN terms are left out (a sample not measured in that unit).
    Within a repeat all units must share one test split (the protocol's design).
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
    units, groups = _coded(units, groups)
    unit_means = np.array([np.nanmean(x) for x in d])
    diff = float(unit_means.mean())
    n_units = len(d)
    if all(np.all(x[~np.isnan(x)] == 0.0) for x in d):
        return PairedComparison(0.0, 0.0, 0.0, 1.0, 0.0, float(n_units - 1), n_units, method,
                                alpha)
    if method == "decomposed":
        sides = None if seed_noise is None else (
            (seed_noise,) if isinstance(seed_noise, SeedNoise) else tuple(seed_noise))
        for sn in sides or ():
            if len(sn.deltas) != len(d):
                raise ValueError(f"seed_noise: {len(sn.deltas)} delta arrays for {len(d)} units")
        if _roles_overlap(units):
            return _resplit_bound(diff, d, units, groups, sides, alpha)
        var, df, var_test, var_train, var_seed, n_groups = _decomposed(d, units, groups, sides)
        return _result(diff, var, df, n_units, method, alpha, var_test, var_train, var_seed,
                       n_groups, False)
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
    nan = float("nan")
    return _result(diff, var, df, n_units, method, alpha, nan, nan, nan, 0, False)


def _decomposed(d: list[np.ndarray], units: Sequence[Unit], groups: np.ndarray | None,
                sides: tuple[SeedNoise, ...] | None
                ) -> tuple[float, float, float, float, float, int]:
    """``var = V_test + V_train + V_seed`` of units whose test and training samples never
    meet (one test split), its Welch–Satterthwaite df, the three parts and the test groups."""
    var_test, df_test, n_groups = _test_variance(d, units, groups)
    seed_c, var_seed, df_seed = 0.0, 0.0, 0.0
    if sides is not None:
        seed_c = sum(_coherent_seed_variance(sn, d, units, groups) / sn.twins for sn in sides)
        var_seed, df_seed = seed_c / len(d), float(len(d))
    var_train, df_train = _train_variance(d, units, groups, seed_c)
    var = var_test + var_train + var_seed
    df = _satterthwaite((var_test, df_test), (var_train, df_train), (var_seed, df_seed))
    return var, df, var_test, var_train, var_seed, n_groups


def _resplit_bound(diff: float, d: list[np.ndarray], units: Sequence[Unit],
                   groups: np.ndarray | None, sides: tuple[SeedNoise, ...] | None,
                   alpha: float) -> PairedComparison:
    """Repeats with their own test splits (``eval.resplit``): each repeat alone is a
    one-split experiment (:func:`_decomposed`), and ``diff`` is the units' mean, ``sum_r w_r
    diff_r`` (``w_r``: the repeat's share of the units). A sample tested in one repeat and
    trained on in another ties the repeats together in a way one survey cannot measure, so
    they are added at correlation 1 (Minkowski: ``se = sum_r w_r se_r``, a bound for any
    covariance), df the smallest repeat's. The parts are reported in the same proportions."""
    repeats = np.array([u.repeat for u in units])
    se, df, parts, n_groups = 0.0, np.inf, np.zeros(3), 0
    for r in np.unique(repeats):
        idx = np.flatnonzero(repeats == r)
        sub = None if sides is None else tuple(
            SeedNoise([sn.deltas[i] for i in idx], sn.twins) for sn in sides)
        var_r, df_r, *parts_r, groups_r = _decomposed([d[i] for i in idx],
                                                      [units[i] for i in idx], groups, sub)
        w = len(idx) / len(units)
        se += w * np.sqrt(var_r)
        df = min(df, df_r)
        parts += w * w * np.array(parts_r)
        n_groups = max(n_groups, groups_r)
    var = se * se
    parts *= var / parts.sum() if parts.sum() > 0 else 0.0
    return _result(diff, var, float(df), len(units), "decomposed", alpha, *map(float, parts),
                   n_groups, True)


def _result(diff: float, var: float, df: float, n_units: int, method: str, alpha: float,
            var_test: float, var_train: float, var_seed: float, n_groups: int,
            bound: bool) -> PairedComparison:
    se = float(np.sqrt(max(var, 0.0)))
    extra = (var_test, var_train, var_seed, n_groups, bound)
    if se == 0.0:  # identical non-zero differences everywhere: no spread to test against
        return PairedComparison(diff, diff, diff, 0.0, 0.0, df, n_units, method, alpha, *extra)
    t = diff / se
    half = float(sps.t.ppf(1.0 - alpha / 2.0, df)) * se
    p = float(2.0 * sps.t.sf(abs(t), df))
    return PairedComparison(diff, diff - half, diff + half, min(p, 1.0), se, float(df),
                            n_units, method, alpha, *extra)


def _satterthwaite(*parts: tuple[float, float]) -> float:
    total = sum(v for v, _ in parts)
    den = sum(v * v / df for v, df in parts if v > 0 and df > 0)
    return float(total * total / den) if den > 0 else float(max(df for _, df in parts))


def _coded(units: Sequence[Unit], groups: Mapping[Any, Any] | None
           ) -> tuple[list[Unit], np.ndarray | None]:
    """The units with integer sample codes (hashing once: ids are often strings) and each
    code's integer group; a sample without a group is an error naming it."""
    ids = np.concatenate([np.concatenate([np.asarray(u.test_ids, dtype=object),
                                          np.asarray(u.train_ids, dtype=object)])
                          for u in units])
    codes, uniques = pd.factorize(ids)
    out, start = [], 0
    for u in units:
        a, b = len(u.test_ids), len(u.train_ids)
        out.append(Unit(u.repeat, codes[start:start + a], codes[start + a:start + a + b]))
        start += a + b
    if groups is None:
        return out, None
    try:
        labels = [groups[i] for i in uniques]
    except KeyError as exc:
        raise ValueError(f"groups: sample {exc.args[0]!r} has no group (scene id)") from None
    return out, pd.factorize(np.asarray(labels, dtype=object).astype(str))[0]


def _group_index(ids: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """[n] consecutive group index of each (coded) id: its own without ``groups``."""
    return np.unique(ids if groups is None else groups[ids], return_inverse=True)[1]


def _test_variance(d: list[np.ndarray], units: Sequence[Unit],
                   groups: np.ndarray | None) -> tuple[float, float, int]:
    """Cluster-robust sandwich variance of ``sum_i W_i e_i`` over the test groups; df = G - 1."""
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
    if seen.sum() < 2:
        raise ValueError("units: need at least 2 distinct test samples")
    w, e = weight[seen], wsum[seen] / weight[seen]
    total = float(np.sum(w * e))
    g = _group_index(keys[seen], groups)
    scores = np.bincount(g, weights=w * (e - total))
    n_groups = len(scores)
    if n_groups < 2:
        raise ValueError(f"units: the test samples form {n_groups} group (scene); the test "
                         "needs at least 2 independent groups")
    return float(n_groups / (n_groups - 1) * np.sum(scores**2)), float(n_groups - 1), n_groups


def _coherent_seed_variance(sn: SeedNoise, d: list[np.ndarray], units: Sequence[Unit],
                            groups: np.ndarray | None) -> float:
    """Per twin, the variance of a unit's mean term that a change of seed alone makes, less
    the part the test part already holds: ``(mean_u Delta_u² - mean_u sum_g (sum_{i in g}
    delta_ui)² / n_u²) / 2``, floored at 0. The flips are summed within each test scene
    (``groups``; a sample alone without), the clusters :func:`_test_variance` treats as
    independent: what is correlated inside a scene is in the test part, what is correlated
    across scenes (a whole unit moving) is the seed part. (Summed sample by sample instead,
    negatively correlated terms inside a scene, as MAP@R's jackknife terms can be, would be
    subtracted here but not counted there: the A/A test of MAP@R came out anti-conservative.)"""
    if sn.twins < 1:
        raise ValueError(f"seed_noise: twins must be >= 1, got {sn.twins}")
    vals = []
    for u, (delta, x) in enumerate(zip(sn.deltas, d, strict=True)):
        delta = np.asarray(delta, np.float64)
        if delta.ndim == 1:
            delta = delta[:, None]
        if delta.ndim != 2 or delta.shape[0] != x.shape[0]:
            raise ValueError(f"seed_noise.deltas[{u}]: shape {delta.shape}, diffs {x.shape}")
        for column in delta.T:  # each contrast measures the seed noise once
            ok = ~np.isnan(column)
            n = int(ok.sum())
            if n == 0:
                continue
            g = _group_index(np.asarray(units[u].test_ids)[ok], groups)
            flips = np.sum(np.bincount(g, weights=column[ok]) ** 2) / n**2
            vals.append(np.mean(column[ok]) ** 2 - flips)
    return max(float(np.mean(vals)) / 2.0, 0.0) if vals else 0.0


def _roles_overlap(units: Sequence[Unit]) -> bool:
    tested = np.unique(np.concatenate([u.test_ids for u in units]))
    trained = np.unique(np.concatenate([u.train_ids for u in units]))
    return bool(np.intersect1d(tested, trained, assume_unique=True).size)


def _train_variance(d: list[np.ndarray], units: Sequence[Unit],
                    groups: np.ndarray | None, seed_c: float) -> tuple[float, float]:
    """First-order training-set variance from the folds' coherent spread (module doc), less
    the seed noise ``seed_c`` the twins measured, in units of the groups the folds keep whole
    (scenes under ``split.group: scene``; samples otherwise)."""
    repeats = np.array([unit.repeat for unit in units])
    whole = groups is not None and _folds_keep_groups(units, groups)
    gmap = groups if whole else None
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
        keep = ~np.any(np.isnan(m), axis=0)
        m = m[:, keep]
        n = m.shape[1]
        if n < 2:
            raise ValueError(f"units: repeat {r} has fewer than 2 test samples with terms")
        spread = m.mean(axis=1).var(ddof=1)
        # per-scene flips (summed within a test scene, as the test part clusters them)
        g = _group_index(ref[order0][keep], groups)
        scene_sums = np.stack([np.bincount(g, weights=row) for row in m])
        flips = scene_sums.var(axis=0, ddof=1).sum() / n**2
        pool_ids = np.unique(np.concatenate([np.asarray(units[u].train_ids) for u in members]))
        pool = len(np.unique(_group_index(pool_ids, gmap))) if len(pool_ids) else 0
        size = np.mean([len(units[u].train_ids) for u in members])
        if pool == 0 or size == 0:
            raise ValueError(f"units: repeat {r} has no training samples")
        s_h2.append((spread - flips - seed_c) * size**2 * k / pool)
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
    # a group moves as one (H_g = the sum of its samples' influences, variance s_h2 per
    # group): its weight is its samples' common v_j (every unit trains on all of it or none)
    g = _group_index(keys, gmap)
    v_group = np.bincount(g, weights=v) / np.bincount(g)
    return s_h2_pooled * float(np.sum(v_group**2)), float(sum(dfs))


def _folds_keep_groups(units: Sequence[Unit], groups: np.ndarray) -> bool:
    """Whether every unit trains on all of a group's pool samples or none (grouped folds)."""
    for r in {u.repeat for u in units}:
        members = [u for u in units if u.repeat == r]
        pool = np.unique(np.concatenate([np.asarray(u.train_ids) for u in members]))
        gp = _group_index(pool, groups)
        for u in members:
            inside = np.isin(pool, u.train_ids)
            per_group = np.bincount(gp, weights=inside) / np.bincount(gp)
            if np.any((per_group > 0) & (per_group < 1)):
                return False
    return True


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
