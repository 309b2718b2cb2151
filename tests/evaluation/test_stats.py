"""Paired comparisons over units (tgmatl.evaluation.stats): hand-computed cases, Holm,
calibration."""

import numpy as np
import pytest
from scipy import stats as sps

from tgmatl.evaluation import stats


def three_units():
    """One repeat, 3 folds over a pool of 3 (p0 p1 p2; each unit trains on 2), shared test
    samples s0 s1 s2. d[u, i] = a_u + b_i with a = (0, .5, 1), b = (0, 1, -1)."""
    d = [np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.5, -0.5]), np.array([1.0, 2.0, 0.0])]
    test = np.array(["s0", "s1", "s2"])
    trains = (["p1", "p2"], ["p0", "p2"], ["p0", "p1"])
    return d, [stats.Unit(0, test, np.array(t)) for t in trains]


def test_three_units_by_hand():
    d, units = three_units()
    # unit means D = (0, .5, 1): diff = .5; S² = ((-.5)² + 0 + .5²) / 2 = .25
    naive = stats.compare(d, units, method="naive")
    # var = S² / J = 1/12, df 2, t = .5 / sqrt(1/12) = sqrt(3); with 2 df the two-sided
    # p-value is 1 - t / sqrt(t² + 2) = 1 - sqrt(3/5)
    assert naive.diff == pytest.approx(0.5)
    assert naive.se == pytest.approx(np.sqrt(1 / 12))
    assert naive.df == 2 and naive.n_units == 3
    assert naive.p_value == pytest.approx(1 - np.sqrt(3 / 5))
    half = sps.t.ppf(0.975, 2) * np.sqrt(1 / 12)
    assert (naive.ci_low, naive.ci_high) == pytest.approx((0.5 - half, 0.5 + half))

    # Nadeau-Bengio: n_test 3, n_train 2: var = (1/3 + 3/2) S² = 11/24; t = sqrt(6/11),
    # p = 1 - sqrt(6/11) / sqrt(6/11 + 2) = 1 - sqrt(3/14)
    nb = stats.compare(d, units, method="nadeau_bengio")
    assert nb.se == pytest.approx(np.sqrt(11 / 24))
    assert nb.p_value == pytest.approx(1 - np.sqrt(3 / 14))

    # decomposed, test part: per-sample means e = (.5, 1.5, -.5), weights W = 1/3 each;
    #   V_test = n/(n-1) sum W² (e - diff)² = 3/2 * 1/9 * (0 + 1 + 1) = 1/3
    # train part: fold spread S² = .25; flips = sum_i var_u(d[:, i]) / n² = 3 * .25 / 9 = 1/12;
    #   S_c = .25 - 1/12 = 1/6; s_h² = S_c m² k / n_p = 1/6 * 4 * 3 / 3 = 2/3;
    #   v_j = 2 units / (J m) = 2 / 6 = 1/3, sum v² = 1/3; V_train = 2/9
    # var = 1/3 + 2/9 = 5/9; df = (5/9)² / ((1/3)²/2 + (2/9)²/2) = 50/13
    dec = stats.compare(d, units)
    assert dec.method == "decomposed"
    assert dec.var_test == pytest.approx(1 / 3)
    assert dec.var_train == pytest.approx(2 / 9)
    assert dec.se == pytest.approx(np.sqrt(5 / 9))
    assert dec.df == pytest.approx(50 / 13)
    t = 0.5 / np.sqrt(5 / 9)
    assert dec.p_value == pytest.approx(2 * sps.t.sf(t, 50 / 13))
    half = sps.t.ppf(0.975, 50 / 13) * np.sqrt(5 / 9)
    assert (dec.ci_low, dec.ci_high) == pytest.approx((0.5 - half, 0.5 + half))
    # alpha widens / narrows the interval
    assert stats.compare(d, units, alpha=0.2).ci_high < dec.ci_high


def test_resplit_bound_adds_the_repeats_at_correlation_one():
    """Repeat 0: :func:`three_units` (diff .5, var 5/9 = 1/3 + 2/9, df 50/13). Repeat 1
    redraws the test split: it tests p0 and trains on s0 (a sample in both roles), with terms
    2 d: diff 1, every part x4 (var 20/9), the same df. Bound: diff = (.5 + 1) / 2 = .75,
    se = (sqrt(5/9) + 2 sqrt(5/9)) / 2 = 1.5 sqrt(5/9), var 5/4, df 50/13. The parts, in the
    repeats' proportions: var_test ∝ (1/3 + 4/3) / 4 = 5/12, var_train ∝ (2/9 + 8/9) / 4 =
    5/18, scaled by (5/4) / (25/36) = 9/5: 3/4 and 1/2."""
    d, units = three_units()
    test1 = np.array(["p0", "s1", "s2"])
    trains1 = (["p1", "p2"], ["s0", "p2"], ["s0", "p1"])
    units = units + [stats.Unit(1, test1, np.array(t)) for t in trains1]
    r = stats.compare(d + [2.0 * x for x in d], units)
    assert r.resplit_bound
    assert r.diff == pytest.approx(0.75)
    assert r.se == pytest.approx(1.5 * np.sqrt(5 / 9))
    assert r.df == pytest.approx(50 / 13)
    assert (r.var_test, r.var_train, r.var_seed) == pytest.approx((0.75, 0.5, 0.0))
    # each repeat alone is the one-split test
    alone = stats.compare([2.0 * x for x in d], units[3:])
    assert not alone.resplit_bound and alone.se == pytest.approx(2 * np.sqrt(5 / 9))


def test_unit_order_and_sample_order_do_not_matter():
    d, units = three_units()
    ref = stats.compare(d, units)
    perm = np.array([2, 0, 1])
    shuffled = [stats.Unit(u.repeat, u.test_ids[perm], u.train_ids) for u in units]
    again = stats.compare([x[perm] for x in d][::-1], shuffled[::-1])
    assert again.se == pytest.approx(ref.se) and again.diff == pytest.approx(ref.diff)


def test_degenerate_cases():
    d, units = three_units()
    zero = stats.compare([np.zeros(3)] * 3, units)
    assert (zero.diff, zero.ci_low, zero.ci_high, zero.p_value) == (0.0, 0.0, 0.0, 1.0)
    const = stats.compare([np.full(3, 0.2)] * 3, units, method="naive")
    assert const.p_value == 0.0 and const.ci_low == const.ci_high == pytest.approx(0.2)
    with pytest.raises(ValueError, match="units: need at least 2 units"):
        stats.compare(d[:1], units[:1])
    with pytest.raises(ValueError, match=r"diffs\[1\]: shape"):
        stats.compare([d[0], d[1][:2], d[2]], units)
    other = [units[0], units[1], stats.Unit(0, np.array(["s0", "s1", "s9"]), units[2].train_ids)]
    with pytest.raises(ValueError, match="another test split"):
        stats.compare(d, other)
    with pytest.raises(ValueError, match="method: unknown"):
        stats.compare(d, units, method="wilcoxon")
    with pytest.raises(ValueError, match="alpha"):
        stats.compare(d, units, alpha=1.5)


def test_nan_terms_are_left_out():
    d, units = three_units()
    d2 = [np.append(x, np.nan) for x in d]
    units2 = [stats.Unit(0, np.append(u.test_ids, "s3"), u.train_ids) for u in units]
    a, b = stats.compare(d, units), stats.compare(d2, units2)
    assert (a.diff, a.se) == pytest.approx((b.diff, b.se))


def test_holm_hand_example():
    # sorted: .005*4 = .02, .01*3 = .03, .03*2 = .06, .04*1 = .04 -> monotone: .06
    adj = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]).shape == (0,)
    with pytest.raises(ValueError, match="pvalues"):
        stats.holm([0.1, 1.2])


def _simulated_pvalues(n_sets: int, resplit: bool, seed: int,
                       repeats: int) -> dict[str, np.ndarray]:
    """Null data sets from the first-order model the module doc describes: a test sample adds
    b_i, a training sample h_j / m, a (unit, sample) flips e_ui, a unit a shift; all mean 0."""
    rng = np.random.default_rng(seed)
    n, n_test, k = 240, 168, 8
    out = {m: [] for m in ("decomposed", "naive")}
    for _ in range(n_sets):
        b = rng.normal(scale=0.4, size=n)
        h = rng.normal(scale=0.15, size=n)
        diffs, units = [], []
        for r in range(repeats):
            if r == 0 or resplit:
                perm = rng.permutation(n)
                test, pool = perm[:n_test], perm[n_test:]
            folds = np.array_split(rng.permutation(pool), k)
            for f in range(k):
                train = np.concatenate([folds[g] for g in range(k) if g != f])
                shift = h[train].mean() + rng.normal(scale=0.01)
                diffs.append(b[test] + shift + rng.normal(scale=0.3, size=n_test))
                units.append(stats.Unit(r, test, train))
        for m in out:
            out[m].append(stats.compare(diffs, units, method=m).p_value)
    return {m: np.array(v) for m, v in out.items()}


@pytest.mark.parametrize(("resplit", "repeats", "low"), [(True, 2, 0.005), (False, 5, 0.01)])
def test_false_positive_rate_on_simulated_nulls(resplit, repeats, low):
    p = _simulated_pvalues(200, resplit, seed=7 if resplit else 8, repeats=repeats)
    fpr = {m: float(np.mean(v <= 0.05)) for m, v in p.items()}
    # 200 sets: a true 5 % rate lands in [0.02, 0.08] with ~95 % probability; the resplit
    # bound (repeats at correlation 1, here ~0.5) is conservative by design
    assert low <= fpr["decomposed"] <= 0.08, fpr
    assert fpr["naive"] >= 0.3, fpr  # the units' spread alone misses the shared samples


def _two_units_four_samples(d: np.ndarray) -> list[stats.Unit]:
    test = np.array(["s0", "s1", "s2", "s3"], dtype=object)
    trains = (np.array(["p1"], dtype=object), np.array(["p0"], dtype=object))
    return [stats.Unit(0, test, t) for t in trains]


def test_cluster_robust_test_part_by_hand():
    """Two units, the same terms d = (.4, .2, -.1, -.1) on s0..s3; scenes g0 = {s0, s1},
    g1 = {s2, s3}. W_i = 1/4, diff = .1, e - diff = (.3, .1, -.2, -.2).

    By sample: V = n/(n-1) Σ W² (e - diff)² = 4/3 · (.09 + .01 + .04 + .04) / 16 = .015, df 3.
    By scene: scene sums of W (e - diff) = .1 and -.1: V = G/(G-1) Σ = 2 · .02 = .04, df 1.
    The two units are equal, so the fold spread (and the training part) is 0.
    """
    d = np.array([0.4, 0.2, -0.1, -0.1])
    units = _two_units_four_samples(d)
    plain = stats.compare([d, d], units)
    assert plain.var_test == pytest.approx(0.015) and plain.var_train == 0.0
    assert plain.n_groups == 4 and plain.df == pytest.approx(3.0)
    groups = {"s0": "g0", "s1": "g0", "s2": "g1", "s3": "g1", "p0": "g2", "p1": "g3"}
    clustered = stats.compare([d, d], units, groups=groups)
    assert clustered.var_test == pytest.approx(0.04) and clustered.n_groups == 2
    assert clustered.df == pytest.approx(1.0)
    assert clustered.se == pytest.approx(0.2)
    with pytest.raises(ValueError, match="sample 's3' has no group"):
        stats.compare([d, d], units, groups={"s0": "g0", "s1": "g0", "s2": "g1"})
    with pytest.raises(ValueError, match="form 1 group"):
        stats.compare([d, d], units, groups=dict.fromkeys(groups, "g"))


def test_seed_part_by_hand():
    """Twins' differences delta (twin 0 - twin 1) per unit: (.2, .2) and (-.2, 0).

    Per unit Delta² - Σ delta² / n²: .04 - .08/4 = .02 and .01 - .04/4 = 0; their mean .01,
    halved (a difference of two twins): sigma²_c = .005 per twin. Each side averages 2 twins:
    .005/2 + .005/2 = .005 per unit, over J = 2 independent units: V_seed = .0025.
    """
    d = np.array([0.4, 0.2, -0.1, -0.1])
    units = _two_units_four_samples(d)
    deltas = [np.array([0.2, 0.2, 0.0, 0.0]), np.array([-0.2, 0.0, 0.0, 0.0])]
    # 4 samples: Delta = .1 and -.05; Σ delta²/n² = .08/16 and .04/16
    per_unit = [0.1**2 - 0.08 / 16, 0.05**2 - 0.04 / 16]
    sigma2 = max(np.mean(per_unit) / 2, 0.0)
    noise = (stats.SeedNoise(deltas, 2), stats.SeedNoise(deltas, 2))
    r = stats.compare([d, d], units, seed_noise=noise)
    assert r.var_seed == pytest.approx(2 * sigma2 / 2 / 2)
    assert r.se == pytest.approx(np.sqrt(r.var_test + r.var_seed))
    # one twin a side (the A/A control): sigma²_c / 1 each
    single = (stats.SeedNoise(deltas, 1), stats.SeedNoise(deltas, 1))
    assert stats.compare([d, d], units, seed_noise=single).var_seed == pytest.approx(
        2 * sigma2 / 2)


def test_twin_contrasts_by_hand():
    """Twins (1, 3, 8) of one sample: column 0 is twin 0 - twin 1 = -2; column 1 is the mean
    of twins 0-1 (2) minus twin 2 (8), -6, times sqrt(2·2/3): -6.928. Twins of equal variance
    s² give columns of variance 2 s² (that of twin 0 - twin 1), uncorrelated."""
    c = stats.twin_contrasts(np.array([[1.0, 3.0, 8.0]]))
    assert c == pytest.approx(np.array([[-2.0, -6.0 * np.sqrt(4.0 / 3.0)]]))
    x = np.random.default_rng(0).standard_normal((200_000, 4)) * 0.5
    c = stats.twin_contrasts(x)
    assert c.var(axis=0) == pytest.approx(np.full(3, 2 * 0.25), rel=0.02)
    assert np.abs(np.corrcoef(c.T) - np.eye(3)).max() < 0.01
    with pytest.raises(ValueError, match="twins >= 2"):
        stats.twin_contrasts(np.ones((3, 1)))


def test_seed_part_averages_every_twin_contrast():
    """Three twins a side: each unit's deltas have two columns, the first as in
    test_seed_part_by_hand ((.2, .2, 0, 0) and (-.2, 0, 0, 0): .1² - .08/16 = .005 and
    .05² - .04/16 = 0), the second (0, 0, .4, 0) and (.1, .1, .1, .1): .1² - .16/16 = 0 and
    .1² - .04/16 = .0075. The four mean .003125, halved: sigma²_c = .0015625 per twin; two
    sides of 3 twins, J = 2 units: V_seed = 2 · .0015625 / 3 / 2 = .00052083."""
    d = np.array([0.4, 0.2, -0.1, -0.1])
    units = _two_units_four_samples(d)
    deltas = [np.array([[0.2, 0.0], [0.2, 0.0], [0.0, 0.4], [0.0, 0.0]]),
              np.array([[-0.2, 0.1], [0.0, 0.1], [0.0, 0.1], [0.0, 0.1]])]
    noise = (stats.SeedNoise(deltas, 3), stats.SeedNoise(deltas, 3))
    r = stats.compare([d, d], units, seed_noise=noise)
    assert r.var_seed == pytest.approx(2 * 0.0015625 / 3 / 2)
    # the first column alone is twin 0 - twin 1's measure: (.005 + 0) / 2 / 2 = .00125 a twin
    first = [x[:, 0] for x in deltas]
    r1 = stats.compare([d, d], units, seed_noise=(stats.SeedNoise(first, 3),) * 2)
    assert r1.var_seed == pytest.approx(2 * 0.00125 / 3 / 2)


def test_seed_part_of_the_difference_by_hand():
    """Twins paired by seed: B's twin differences are half of A's (two setups started alike
    move together), so the difference's are half of A's too: (.1, .1, 0, 0), (-.1, 0, 0, 0).

    Per unit Delta² - Σ delta² / n² (4 samples): .05² - .02/16 = .00125 and .025² - .01/16 =
    0; mean .000625, halved: sigma²_c = .0003125 per twin; two twins averaged, J = 2 units:
    V_seed = .0003125 / 2 / 2 = .000078125. The sides measured apart would add A's .00125 and
    B's .0003125 per twin: V_seed = .000390625, five times as much.
    """
    d = np.array([0.4, 0.2, -0.1, -0.1])
    units = _two_units_four_samples(d)
    deltas_a = [np.array([0.2, 0.2, 0.0, 0.0]), np.array([-0.2, 0.0, 0.0, 0.0])]
    deltas_b = [x / 2 for x in deltas_a]
    paired = stats.SeedNoise.of_difference(deltas_a, deltas_b, 2)
    assert stats.compare([d, d], units, seed_noise=paired).var_seed == pytest.approx(
        0.000078125)
    apart = (stats.SeedNoise(deltas_a, 2), stats.SeedNoise(deltas_b, 2))
    assert stats.compare([d, d], units, seed_noise=apart).var_seed == pytest.approx(
        0.000390625)


def test_paired_seed_part_is_unbiased_where_setups_share_seeds():
    """Simulated setups whose seed noise correlates rho = 0.8 (continuous terms: the seed part
    of a twin-mean difference is exactly 2 (1 - rho) sd_seed² / T / J = 8e-5 here; the flips
    of single samples belong to the test part). The difference's twins measure it; adding the
    sides' measures 2 sd_seed² / T / J = 4e-4, five times too much, and the same excess taken
    out of the training part leaves that part at 0 (anti-conservative: the old estimate)."""
    from tgmatl.evaluation.simulate import Design, compare_arms, simulate_arms

    d = Design(kind="continuous", seed_agreement=0.8)
    paired, apart = [], []
    for seed in range(40):
        data = simulate_arms(d, seed)
        paired.append(compare_arms(data, 1, 0))
        apart.append(compare_arms(data, 1, 0, twins_a=[0, 1], twins_b=[0, 1]))
    truth = 2 * (1 - 0.8) * d.sd_seed**2 / d.twins / 16
    assert np.mean([r.var_seed for r in paired]) == pytest.approx(truth, rel=0.2)
    assert np.mean([r.var_seed for r in apart]) == pytest.approx(5 * truth, rel=0.2)
    assert np.mean([r.var_train == 0 for r in apart]) > np.mean(
        [r.var_train == 0 for r in paired])


def test_seed_flips_are_summed_within_test_scenes():
    """Scenes g0 = {s0, s1}, g1 = {s2, s3}; twin differences (.2, -.2, 0, 0) and (.1, .1, .1, .1).

    Unit 0: Delta = 0; its flips cancel inside g0 (scene sums 0, 0): 0 - 0 = 0.
    Unit 1: Delta = .1, Delta² = .01; scene sums (.2, .2): flips (.04 + .04) / 16 = .005,
    so .01 - .005 = .005. sigma²_c = mean(0, .005) / 2 = .00125 per twin; two twins a side,
    J = 2: V_seed = 2 · .00125 / 2 / 2 = .000625. Sample by sample (no scenes) the flips
    would be .08/16 and .04/16: sigma²_c = mean(-.005, .0075) / 2 = .000625, half as much.
    """
    d = np.array([0.4, 0.2, -0.1, -0.1])
    units = _two_units_four_samples(d)
    deltas = [np.array([0.2, -0.2, 0.0, 0.0]), np.array([0.1, 0.1, 0.1, 0.1])]
    noise = (stats.SeedNoise(deltas, 2), stats.SeedNoise(deltas, 2))
    groups = {"s0": "g0", "s1": "g0", "s2": "g1", "s3": "g1", "p0": "g2", "p1": "g3"}
    scenes = stats.compare([d, d], units, seed_noise=noise, groups=groups)
    assert scenes.var_seed == pytest.approx(0.000625)
    alone = stats.compare([d, d], units, seed_noise=noise)
    assert alone.var_seed == pytest.approx(0.0003125)


def test_one_sided_p_bounds_and_mde():
    r = stats.PairedComparison(0.05, 0.0, 0.1, 0.1, 0.02, 30.0, 16, "decomposed", 0.05)
    assert r.p_greater() == pytest.approx(sps.t.sf(2.5, 30))
    assert r.p_less(0.1) == pytest.approx(sps.t.sf(2.5, 30))
    assert r.bound(0.95, "lower") == pytest.approx(0.05 - sps.t.ppf(0.95, 30) * 0.02)
    # the MDE: (t_.975 + t_.8) se; a true effect that size is detected with power .8
    mde = r.mde()
    assert mde == pytest.approx((sps.t.ppf(0.975, 30) + sps.t.ppf(0.8, 30)) * 0.02)
    power = sps.nct.sf(sps.t.ppf(0.975, 30), 30, mde / 0.02)
    assert power == pytest.approx(0.8, abs=0.01)


def test_small_calibration_through_the_report_code():
    """A small version of benchmarks/bench_calibration.py: survey-structured terms with strong
    herds (60 % of every effect shared by a scene of ~5), scene-grouped splits, seed twins,
    the test as the report runs it. 150 data sets: a true 5 % rate lands below 0.1 with
    probability > 0.99; a test that treats the samples as independent does not."""
    from tgmatl.evaluation.simulate import Design, compare_arms, simulate_arms

    d = Design(scene_share=0.6, scene_size=5.0, influence_test_corr=0.5)
    p_sym, p_control, p_naive = [], [], []
    for seed in range(150):
        data = simulate_arms(d, seed)
        p_sym.append(compare_arms(data, 1, 0).p_value)
        p_control.append(compare_arms(data, 0, 0, twins_a=[0], twins_b=[1]).p_value)
        flat = stats.compare([t[1].mean(axis=0) - t[0].mean(axis=0) for t in data.terms],
                             data.units, method="naive")
        p_naive.append(flat.p_value)
    assert np.mean(np.array(p_sym) < 0.05) <= 0.1
    assert np.mean(np.array(p_control) < 0.05) <= 0.1
    assert np.mean(np.array(p_naive) < 0.05) >= 0.3  # the units' own spread: far too small


@pytest.mark.parametrize("resplit", [False, True])
def test_a_location_shift_moves_only_the_difference(resplit):
    """What benchmarks/bench_calibration_pipeline.py's power rests on: raising every term of
    one side by 0.03 moves ``diff`` by 0.03 and leaves se and df as they were (every part is
    built from deviations: samples from the mean, folds from each other, twin from twin)."""
    from tgmatl.evaluation.simulate import Design, compare_arms, simulate_arms

    data = simulate_arms(Design(kind="binary", resplit=resplit), 3)
    base = compare_arms(data, 1, 0)
    for t in data.terms:
        t[1] += 0.03
    moved = compare_arms(data, 1, 0)
    assert moved.diff == pytest.approx(base.diff + 0.03)
    assert moved.se == pytest.approx(base.se, rel=1e-12)
    assert moved.df == pytest.approx(base.df, rel=1e-12)
    assert moved.resplit_bound == resplit
