"""Simulated comparisons with the structure of a real survey, for calibrating the paired test.

A data set is a survey of ``n`` targets in scenes (herds), evaluated by the protocol: a
scene-grouped test split (70 %; redrawn per repeat with ``resplit``), scene-grouped folds over
the rest, ``repeats`` × ``folds`` units, every unit trained ``twins`` times. Each of ``arms``
setups gets per-sample terms (their unit mean is the unit's metric) from a latent score::

    z[k, u, t, i] = mu_k + a[k, i] + (1/m_u) sum_{j in train_u} h[k, j] + e[k, u, t]
                    + f[k, u, t, i]

- ``a[k, i]``: how well setup k does on test sample ``i`` (shared by every unit testing it);
  a share ``scene_share`` of its variance is common to the sample's scene (herds: shared
  background, light, appearance); setups agree on it with correlation ``agreement`` (one
  common factor);
- ``h[k, j]``: how much training on sample ``j`` moves setup k (training-set influence; the
  same scene share; setups agree with correlation ``influence_agreement``). With
  ``influence_test_corr``, a sample's influence as a training sample is correlated with its
  own difficulty as a test sample: its two roles covary when ``resplit`` lets it take both;
- ``e``: a unit's whole-unit seed noise (Adam's start, batch order, early stop), ``f``:
  per-sample flips of the seed. Different setups of one unit and twin share their seed (the
  pipeline seeds units and twins, not setups), so their seed noise is correlated
  ``seed_agreement`` (planted surveys through the real training: 0.74-0.95, CLTL vs MATL);
  an A/A pair's seeds are apart (independent).

The term is ``1[z > 0]`` (``kind="binary"``: accuracy) or ``z`` itself (``"continuous"``: an
R²-like error term). ``aa=True`` makes every arm the same setup (the same ``a`` and ``h``;
seeds apart): an A/A null. Otherwise arms are different setups, equal by symmetry (exchangeable
draws) unless ``shift`` moves arm 1 (``mu_1 - mu_0``). :func:`compare_arms` passes two arms
through :func:`tgmatl.evaluation.stats.compare` exactly as the report passes two setups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgmatl.evaluation import stats


@dataclass(frozen=True)
class Design:
    n: int = 240                  # targets
    scene_size: float = 2.5       # mean targets a scene
    test_size: float = 0.7
    folds: int = 8
    repeats: int = 2
    twins: int = 2
    resplit: bool = False
    scene_share: float = 0.3      # share of a sample's effects common to its scene
    sd_sample: float = 1.0        # sd of a[k, i]
    agreement: float = 0.5        # corr(a[k, i], a[l, i]) for two different setups
    sd_influence: float = 0.4     # sd of h[k, j] (times 1/m: a unit's training-set effect)
    influence_agreement: float = 0.5  # corr(h[k, j], h[l, j]) for two different setups
    influence_test_corr: float = 0.0
    sd_seed: float = 0.08         # whole-unit seed noise
    sd_flip: float = 0.5          # per-sample seed flips
    seed_agreement: float = 0.0   # corr of two setups' seed noise (same unit, twin and seed)
    kind: str = "binary"
    aa: bool = False              # every arm the same setup (seeds apart)
    shift: float = 0.0            # mu_1 - mu_0 on the latent scale


@dataclass(frozen=True)
class Arms:
    """One simulated data set: ``terms[u]`` [arms, twins, n_test_u] per unit."""

    terms: list[np.ndarray]
    units: list[stats.Unit]
    groups: dict[str, str]


def _scenes(n: int, mean_size: float, rng: np.random.Generator) -> np.ndarray:
    """[n] scene of each target: scene sizes 1 + Poisson(mean - 1) (herds vary)."""
    sizes: list[int] = []
    while sum(sizes) < n:
        sizes.append(1 + int(rng.poisson(mean_size - 1.0)))
    return np.repeat(np.arange(len(sizes)), sizes)[:n]


def _grouped(groups: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """[n] True for the samples of scenes drawn until about ``share`` of the samples."""
    order = rng.permutation(groups.max() + 1)
    counts = np.bincount(groups, minlength=len(order))
    take = order[: int(np.searchsorted(np.cumsum(counts[order]), share * len(groups))) + 1]
    return np.isin(groups, take)


def _effects(scene: np.ndarray, sd: float, share: float, agree: float, arms: int,
             rng: np.random.Generator) -> np.ndarray:
    """[arms, n] effects of variance sd², a ``share`` common to each scene, arms correlated
    ``agree`` through one common factor."""
    def draw() -> np.ndarray:
        common = rng.standard_normal(scene.max() + 1)[scene]
        return np.sqrt(share) * common + np.sqrt(1.0 - share) * rng.standard_normal(len(scene))

    base = draw()
    own = np.stack([draw() for _ in range(arms)])
    return sd * (np.sqrt(agree) * base + np.sqrt(1.0 - agree) * own)


def _seed_noise(shape: tuple[int, ...], rho: float, rng: np.random.Generator) -> np.ndarray:
    """Standard normal noise, arms (axis 0) correlated ``rho`` through a shared draw."""
    common = rng.standard_normal((1, *shape[1:]))
    return np.sqrt(rho) * common + np.sqrt(1.0 - rho) * rng.standard_normal(shape)


def simulate_arms(d: Design, seed: int, arms: int = 2) -> Arms:
    """One data set of ``arms`` setups measured on the same units (module doc)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x63616C6962]))
    scene = _scenes(d.n, d.scene_size, rng)
    ids = np.array([f"s{i:05d}" for i in range(d.n)], dtype=object)
    a = _effects(scene, d.sd_sample, d.scene_share, 1.0 if d.aa else d.agreement, arms, rng)
    h = _effects(scene, d.sd_influence, d.scene_share,
                 1.0 if d.aa else d.influence_agreement, arms, rng)
    if d.influence_test_corr:  # a sample's two roles covary (per setup)
        k = d.influence_test_corr
        h = k * (d.sd_influence / d.sd_sample) * a + np.sqrt(1 - k**2) * h
    mu = np.full(arms, 0.4)
    mu[1:2] += d.shift
    terms, units = [], []
    rho = 0.0 if d.aa else d.seed_agreement
    test = _grouped(scene, d.test_size, rng)
    for r in range(d.repeats):
        if r and d.resplit:
            test = _grouped(scene, d.test_size, rng)
        pool = np.flatnonzero(~test)
        pool_scenes = np.unique(scene[pool])
        if len(pool_scenes) < d.folds:
            raise ValueError(f"n: {len(pool_scenes)} scenes outside the test split for "
                             f"{d.folds} folds")
        fold_of = dict(zip(rng.permutation(pool_scenes), np.arange(len(pool_scenes)) % d.folds,
                           strict=True))
        fold = np.array([fold_of[g] for g in scene[pool]])
        te = np.flatnonzero(test)
        for f in range(d.folds):
            tr = pool[fold != f]
            trained = h[:, tr].mean(axis=1)  # [arms] the unit's training-set effect
            z = (mu[:, None, None] + a[:, None, te] + trained[:, None, None]
                 + d.sd_seed * _seed_noise((arms, d.twins, 1), rho, rng)
                 + d.sd_flip * _seed_noise((arms, d.twins, len(te)), rho, rng))
            terms.append((z > 0).astype(float) if d.kind == "binary" else z)
            units.append(stats.Unit(r, ids[te], ids[tr]))
    return Arms(terms, units, dict(zip(ids, scene.astype(str), strict=True)))


def compare_arms(data: Arms, a: int, b: int, *, alpha: float = 0.05,
                 twins_a: list[int] | None = None,
                 twins_b: list[int] | None = None) -> stats.PairedComparison:
    """Arm ``a`` against arm ``b`` through :func:`tgmatl.evaluation.stats.compare` as the
    report passes two setups (:func:`tgmatl.evaluation.comparisons.compare`): twin means
    differenced, the seed noise from the difference's twin contrasts (twins paired by seed;
    :func:`tgmatl.evaluation.stats.twin_contrasts`); with ``twins_a`` / ``twins_b`` (an A/A
    control of twin 0 against twin 1) each side's apart, from its arm's twin contrasts."""
    diffs, deltas_a, deltas_b = [], [], []
    ta = twins_a if twins_a is not None else list(range(data.terms[0].shape[1]))
    tb = twins_b if twins_b is not None else list(range(data.terms[0].shape[1]))
    for t in data.terms:
        diffs.append(t[a, ta].mean(axis=0) - t[b, tb].mean(axis=0))
        deltas_a.append(stats.twin_contrasts(t[a].T))
        deltas_b.append(stats.twin_contrasts(t[b].T))
    noise: stats.SeedNoise | tuple[stats.SeedNoise, stats.SeedNoise]
    if twins_a is None and twins_b is None:
        noise = stats.SeedNoise.of_difference(deltas_a, deltas_b, len(ta))
    else:
        noise = (stats.SeedNoise(deltas_a, len(ta)), stats.SeedNoise(deltas_b, len(tb)))
    return stats.compare(diffs, data.units, alpha=alpha, groups=data.groups, seed_noise=noise)
