"""Per-sample paired terms, the findings' rows and the verdict rules."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sklearn.metrics import r2_score

from tgmatl.evaluation.comparisons import (
    FINDINGS,
    Comparison,
    FindingRow,
    compare,
    finding_rows,
    paired_terms,
    unit_memberships,
)
from tgmatl.evaluation.evidence import verdict_rows
from tgmatl.evaluation.stats import PairedComparison

SETUPS = ["wtl", "cltl", "cltl_hard", "matl", "tg_matl", "cmatl"]


def _preds(rng, noise: float, n: int = 20) -> pd.DataFrame:
    truth = np.random.default_rng(0).uniform(size=(2 * n, 2))  # shared by both setups
    df = pd.DataFrame({"repeat": np.repeat([0, 1], n), "fold": 0,
                       "sample_id": [f"s{i}" for i in range(2 * n)],
                       "class_id": np.arange(2 * n) % 3, "class_pred": rng.integers(0, 3, 2 * n),
                       "class_map_term": rng.uniform(size=2 * n),
                       "box_map_term": rng.uniform(size=2 * n)})
    for k, f in enumerate(("area", "squareness")):
        df[f"feat_{f}"] = truth[:, k]
        df[f"pred_{f}"] = truth[:, k] + noise * rng.normal(size=2 * n)
    return df


def test_unit_means_of_the_terms_are_the_metric_differences():
    rng = np.random.default_rng(1)
    a, b = _preds(rng, 0.1), _preds(rng, 0.3)
    feats = ["area", "squareness"]
    cols = [f"feat_{f}" for f in feats]
    for metric in ("accuracy", "r2", "class_map_at_r"):
        terms = paired_terms(a, b, metric, feats)
        for r in (0, 1):
            ua, ub = a[a.repeat == r], b[b.repeat == r]
            got = terms.loc[terms.repeat == r, "d"].mean()
            if metric == "accuracy":
                want = (ua.class_pred == ua.class_id).mean() - (ub.class_pred == ub.class_id).mean()
            elif metric == "r2":
                # ΔR² = -(1/K) Σ_k (SSE_a,k - SSE_b,k) / SST_k, the mean of the terms
                want = (r2_score(ua[cols], ua[[f"pred_{f}" for f in feats]])
                        - r2_score(ub[cols], ub[[f"pred_{f}" for f in feats]]))
            else:
                want = ua.class_map_term.mean() - ub.class_map_term.mean()
            assert got == pytest.approx(want, abs=1e-12), metric
    with pytest.raises(ValueError, match="unknown metric"):
        paired_terms(a, b, "f1", feats)


def test_twins_are_averaged_within_a_side():
    rng = np.random.default_rng(2)
    a0, a1, b = _preds(rng, 0.1), _preds(rng, 0.2), _preds(rng, 0.3)
    a = pd.concat([a0.assign(twin=0), a1.assign(twin=1)], ignore_index=True)
    terms = paired_terms(a, b.assign(twin=0), "accuracy", ["area"])
    want = (((a0.class_pred == a0.class_id).astype(float)
             + (a1.class_pred == a1.class_id).astype(float)) / 2
            - (b.class_pred == b.class_id).astype(float))
    want.index = pd.MultiIndex.from_frame(b[["repeat", "fold", "sample_id"]])
    got = terms.set_index(["repeat", "fold", "sample_id"])["d"]
    np.testing.assert_allclose(got.to_numpy(), want.loc[got.index].to_numpy())


def test_finding_rows_name_every_case():
    best = next(f for f in FINDINGS if f.kind == "best_backbone")
    rows = finding_rows(best, ["dinov2", "mae", "clip"], SETUPS)
    assert [r.parts for r in rows] == [(
        (("dinov2", "tg_matl"), ("mae", "tg_matl")),
        (("dinov2", "tg_matl"), ("clip", "tg_matl")))]
    # nothing is skipped silently: a row that cannot be judged says why
    (row,) = finding_rows(best, ["mae", "clip"], SETUPS)
    assert row.parts == () and row.reason == "dinov2 is not in embed.backbones"
    (row,) = finding_rows(best, ["dinov2"], SETUPS)
    assert row.reason == "needs at least 2 backbones"
    hard = next(f for f in FINDINGS if f.key == "cltl_hard_acc_highest")
    (row,) = finding_rows(hard, ["clip"], SETUPS)
    # "highest of all": against every configured setup, those beyond the paper too
    assert [b[1] for _, b in row.parts] == ["wtl", "cltl", "matl", "tg_matl", "cmatl"]
    above = next(f for f in FINDINGS if f.key == "tg_matl_acc_above_matl")
    rows = finding_rows(above, ["clip", "mae"], ["wtl", "tg_matl"])
    assert [(r.backbone, r.reason) for r in rows] == [
        ("clip", "MATL (0.5) not in train.setups"), ("mae", "MATL (0.5) not in train.setups")]


def _comparison(a: str, b: str, diff: float, se: float, df: float = 40.0) -> Comparison:
    half = sps.t.ppf(0.975, df) * se
    p = 2 * sps.t.sf(abs(diff) / se, df)
    return Comparison(("clip", a), ("clip", b), "accuracy",
                      PairedComparison(diff, diff - half, diff + half, p, se, df, 16,
                                       "decomposed", 0.05))


def _with_one_sided_p(p: float, a: str = "cltl_hard", b: str = "wtl", df: float = 40.0,
                      se: float = 0.01) -> Comparison:
    """A comparison whose one-sided p of ``a > b`` is ``p``."""
    return _comparison(a, b, sps.t.isf(p, df) * se, se, df)


def test_verdict_rules():
    hard = next(f for f in FINDINGS if f.key == "cltl_hard_acc_highest")
    row = FindingRow(hard, "clip", tuple((("clip", "cltl_hard"), ("clip", s))
                                         for s in ("wtl", "cltl", "matl", "tg_matl")))
    margins = {"accuracy": 0.02}
    # four parts, each at raw one-sided p 0.003: the finding's p is the largest part's (an
    # intersection-union test needs no adjustment inside a finding) -> holds
    parts = [_with_one_sided_p(0.003, b=s) for s in ("wtl", "cltl", "matl", "tg_matl")]
    (out,) = verdict_rows([row], {0: parts}, margins, 0.05)
    assert out["p"] == pytest.approx(0.003)
    # Holm over the family of every row's claim and contrary: 2 x 0.003 here
    assert out["p_holm"] == pytest.approx(0.006) and out["verdict"] == "holds"
    assert out["bound_low"] > 0 and out["covers"] == ["wtl", "cltl", "matl", "tg_matl"]
    # one part not shown -> inconclusive; one part significantly against -> contradicted
    weak = parts[:3] + [_with_one_sided_p(0.2, b="tg_matl")]
    assert verdict_rows([row], {0: weak}, margins, 0.05)[0]["verdict"] == "inconclusive"
    against = parts[:3] + [_with_one_sided_p(0.999, b="tg_matl")]
    out = verdict_rows([row], {0: against}, margins, 0.05)[0]
    # against: the smallest one-sided p against the claim, times the 4 parts' tests
    assert out["p_against"] == pytest.approx(min(1.0, 4 * 0.001))
    assert out["verdict"] == "contradicted"
    # a missing setup: a row 'not evaluable' with its reason, outside the Holm family
    missing = FindingRow(hard, "mae", (), "CLTL (Hard) is not in train.setups")
    rows = verdict_rows([row, missing], {0: parts, 1: []}, margins, 0.05)
    assert rows[1]["verdict"] == "not evaluable"
    assert rows[1]["reason"] == "CLTL (Hard) is not in train.setups"
    assert rows[0]["p_holm"] == pytest.approx(0.006)
    # beside 7 findings with large p: 16 hypotheses (claims and contraries), 16 x 0.003
    others = [FindingRow(hard, f"b{i}", row.parts) for i in range(7)]
    loose = [_with_one_sided_p(0.5, b=s) for s in ("wtl", "cltl", "matl", "tg_matl")]
    rows = verdict_rows([row, *others], {0: parts, **{i + 1: loose for i in range(7)}},
                        margins, 0.05)
    assert rows[0]["p_holm"] == pytest.approx(0.048) and rows[0]["verdict"] == "holds"
    # a directional claim is one-sided: a part at two-sided p 0.08 in the claimed direction
    # (one-sided 0.04) holds alone
    above = next(f for f in FINDINGS if f.key == "tg_matl_acc_above_matl")
    one = FindingRow(above, "clip", ((("clip", "tg_matl"), ("clip", "matl")),))
    c = _with_one_sided_p(0.02, a="tg_matl", b="matl")
    assert c.result.p_value == pytest.approx(0.04)
    out = verdict_rows([one], {0: [c]}, margins, 0.05)[0]
    assert out["p"] == pytest.approx(0.02) and out["verdict"] == "holds"


def test_tost_hand_example():
    """Equivalence within ±m: both one-sided tests H1: d > -m and H1: d < m must reject.

    d = -0.005, se = 0.01, df = 30, m = 0.03: t_lower = (d + m)/se = 2.5, t_upper = (m - d)/se
    = 3.5, so p = max(sf(2.5, 30), sf(3.5, 30)) = sf(2.5, 30) ≈ 0.0090; Holm over the row's
    claim and contrary doubles it: 0.018 < 0.05, equivalent. With m = 0.01: t_lower = 0.5,
    p = sf(0.5, 30) ≈ 0.31: not shown. The interval shown is the 90 % one, d ± t_0.95 se, which
    lies inside ±m exactly when TOST rejects at 0.05 (unadjusted).
    """
    below = next(f for f in FINDINGS if f.kind == "within_margin")
    row = FindingRow(below, "clip", ((("clip", "tg_matl"), ("clip", "wtl")),))
    c = _comparison("tg_matl", "wtl", -0.005, 0.01, 30.0)
    out = verdict_rows([row], {0: [c]}, {"r2": 0.03}, 0.05)[0]
    assert out["p"] == pytest.approx(sps.t.sf(2.5, 30))
    assert out["p_holm"] == pytest.approx(2 * sps.t.sf(2.5, 30))
    assert out["verdict"] == "holds" and out["test"] == "equivalence (TOST, margin ±0.03)"
    q = sps.t.ppf(0.95, 30) * 0.01
    assert (out["bound_low"], out["bound_high"]) == pytest.approx((-0.005 - q, -0.005 + q))
    assert out["bound_low"] > -0.03 and out["bound_high"] < 0.03
    out = verdict_rows([row], {0: [c]}, {"r2": 0.01}, 0.05)[0]
    assert out["p"] == pytest.approx(sps.t.sf(0.5, 30)) and out["verdict"] == "inconclusive"
    # far outside the margin: contradicted (the 2 one-sided tests against, Bonferroni)
    far = _comparison("tg_matl", "wtl", -0.08, 0.01, 30.0)
    out = verdict_rows([row], {0: [far]}, {"r2": 0.03}, 0.05)[0]
    assert out["p_against"] == pytest.approx(2 * sps.t.sf(5.0, 30))
    assert out["verdict"] == "contradicted"


def _twin_cells(shift: np.ndarray) -> tuple[dict, dict, dict]:
    """Two repeats × two folds, test samples s0..s7 in scenes of two, pool p0..p3; A's class
    MAP@R terms move per unit and twin (seed noise), B's are A's less ``shift`` per sample:
    B's seed noise is A's, as for two setups started from the same weights."""
    rng = np.random.default_rng(5)
    test = [f"s{i}" for i in range(8)]
    split = pd.DataFrame({"repeat": np.repeat([0, 1], 12), "sample_id": (test + [
        f"p{i}" for i in range(4)]) * 2, "test": ([True] * 8 + [False] * 4) * 2,
        "fold": ([-1] * 8 + [0, 0, 1, 1]) * 2})
    rows = [{"repeat": r, "fold": f, "twin": t, "sample_id": s,
             "class_map_term": 0.5 + 0.1 * i + noise}
            for r in (0, 1) for f in (0, 1) for t in (0, 1)
            for noise in [rng.normal(scale=0.05)] for i, s in enumerate(test)]
    a = pd.DataFrame(rows)
    b = a.assign(class_map_term=a["class_map_term"] - np.tile(shift, 8))
    scenes = {s: f"g{i // 2}" for i, s in enumerate(test)} | {f"p{i}": f"q{i}" for i in range(4)}
    return {("x", "a"): a, ("x", "b"): b}, unit_memberships(split), scenes


def test_seed_noise_is_measured_on_the_difference_of_twins_paired_by_seed():
    """B's twins move exactly as A's (shared seeds): the difference has no seed noise at all,
    which its own twin 0 - twin 1 shows (V_seed = 0); the sides measured apart would add A's
    seed noise twice."""
    preds, train_ids, scenes = _twin_cells(np.linspace(0.0, 0.07, 8))
    args = (preds, ("x", "a"), ("x", "b"), "class_map_at_r", [], train_ids, scenes)
    paired = compare(*args, alpha=0.05).result
    assert paired.var_seed == 0.0
    apart = compare(*args, alpha=0.05, twins_a=[0, 1], twins_b=[0, 1]).result
    assert apart.var_seed > 0.0
    assert paired.diff == pytest.approx(apart.diff)


def test_training_part_at_its_floor_is_marked():
    """A significant comparison whose training part is 0 gets a † and a note; one with a
    training part does not; comparisons.json carries each one's training share."""
    from tgmatl.evaluation.evidence import Evidence, comparisons_json, comparisons_markdown

    def comp(b: str, diff: float, var_test: float, var_train: float) -> Comparison:
        se = float(np.sqrt(var_test + var_train))
        p = 2 * sps.t.sf(abs(diff) / se, 40.0)
        return Comparison(("clip", "tg_matl"), ("clip", b), "accuracy",
                          PairedComparison(diff, diff - 2 * se, diff + 2 * se, p, se, 40.0, 16,
                                           "decomposed", 0.05, var_test, var_train, 0.0))

    at_floor = comp("wtl", 0.05, 1e-4, 0.0)       # se 0.01, p < 0.001
    with_train = comp("cltl", 0.05, 1e-4, 3e-4)  # se 0.02, p 0.017: the share is 3/4
    ev = Evidence([(at_floor, 0.001), (with_train, 0.03)], [], 0.05, "decomposed")
    md = comparisons_markdown(ev).splitlines()
    assert "†" in md[2] and "†" not in md[3]
    assert any(line.startswith("†: significant with the training part") for line in md)
    out = comparisons_json(ev)["clip"]
    assert out["vs_wtl"]["accuracy_train_share"] == 0.0
    assert out["vs_cltl"]["accuracy_train_share"] == pytest.approx(0.75)
    # nothing significant at the floor: no note
    quiet = Evidence([(with_train, 0.03)], [], 0.05, "decomposed")
    assert "†" not in comparisons_markdown(quiet)
