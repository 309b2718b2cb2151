"""Per-sample paired terms and the verdict rule of the findings."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score

from tgmatl.evaluation.comparisons import FINDINGS, finding_parts, paired_terms, verdict


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


def test_verdicts():
    assert verdict([0.03, 0.02], [0.01, 0.04], 0.05) == "holds"
    assert verdict([0.03, 0.02], [0.01, 0.06], 0.05) == "inconclusive"  # one part not shown
    assert verdict([0.03, -0.02], [0.01, 0.01], 0.05) == "contradicted"
    assert verdict([-0.03], [0.2], 0.05) == "inconclusive"


def test_finding_parts():
    best = next(f for f in FINDINGS if f.best_backbone)
    parts = finding_parts(best, ["dinov2", "mae", "clip"])
    assert [(row, a, b) for row, a, b in parts] == [
        ("dinov2", ("dinov2", "tg_matl"), ("mae", "tg_matl")),
        ("dinov2", ("dinov2", "tg_matl"), ("clip", "tg_matl"))]
    assert finding_parts(best, ["mae", "clip"]) == []  # no DINOv2: nothing to judge
    hard = next(f for f in FINDINGS if f.key == "cltl_hard_acc_highest")
    assert len(finding_parts(hard, ["clip"])) == 4


def test_predictions_with_seed_twins_read_twin_0(tmp_path):
    """Seed twins (train.twins): the paired statistics read each unit's twin 0."""
    from tgmatl.config import results_file
    from tgmatl.evaluation.comparisons import read_predictions

    rng = np.random.default_rng(2)
    one = _preds(rng, 0.1)
    twins = pd.concat([one.assign(twin=np.int32(k)) for k in range(2)], ignore_index=True)
    twins.loc[twins.twin == 1, "class_pred"] = 99  # must not be read
    for setup, df in (("matl", twins), ("cltl", one)):
        path = results_file(tmp_path, "b", setup, ".predictions.parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(path)
    got = read_predictions(tmp_path, [("b", "matl"), ("b", "cltl")])
    assert "twin" not in got["b", "matl"] and (got["b", "matl"]["class_pred"] != 99).all()
    pd.testing.assert_frame_equal(got["b", "matl"], got["b", "cltl"])
