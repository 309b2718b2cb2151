"""The report stage on fake results: Table II JSON and markdown, Table I, the PNG plots."""

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tgmatl.config import SETUPS, EvalParams, MarginParams, results_file
from tgmatl.errors import InputError
from tgmatl.evaluation.plots import pca_2d
from tgmatl.evaluation.report import (
    PLOT_FILES,
    TABLE_METRICS,
    read_results,
    run_report,
    table2,
)

BACKBONES = ["dinov2", "clip"]
MARGIN = MarginParams(accuracy=0.02, r2=0.03, class_map_at_r=0.02, box_map_at_r=0.02)
CLASSES = ["cow", "deer", "horse"]


N_TEST, REPEATS, FOLDS, TWINS = 60, 2, 3, 2
IDS = [f"s{i:03d}" for i in range(90)]
SCENES = {sid: f"scene{i // 2}" for i, sid in enumerate(IDS)}  # two targets a scene
# planted accuracies: CLTL (Hard) clearly best, TG-MATL clearly above MATL
ACCURACY = {"wtl": 0.6, "cltl": 0.62, "cltl_hard": 0.95, "matl": 0.6, "tg_matl": 0.8,
            "matl_tuned": 0.6, "matl_uw": 0.61, "matl_gradnorm": 0.6, "cmatl": 0.62}


def fake_split() -> pd.DataFrame:
    """A fixed test split of 60 of 90 samples, 3 folds over the rest, 2 repeats."""
    rows = []
    for r in range(REPEATS):
        fold = np.full(90, -1, np.int32)
        fold[N_TEST:] = (np.arange(30) + r) % FOLDS
        rows.append(pd.DataFrame({"repeat": np.int32(r), "sample_id": IDS,
                                  "test": np.arange(90) < N_TEST, "fold": fold}))
    return pd.concat(rows, ignore_index=True)


def fake_predictions(backbone: str, setup: str) -> pd.DataFrame:
    rng = np.random.default_rng(zlib.crc32(f"{backbone}/{setup}".encode()))
    truth_rng = np.random.default_rng(7)  # the truth is shared by every setup
    cls = np.arange(N_TEST) % 3
    feats = truth_rng.uniform(size=(N_TEST, 2))
    parts = []
    for r, f, twin in np.ndindex(REPEATS, FOLDS, TWINS):
        # each (unit, seed twin) draws its own outcomes
        right = rng.uniform(size=N_TEST) < ACCURACY[setup]
        pred = np.where(right, cls, (cls + 1) % 3)
        noise = 0.1 if setup == "tg_matl" else 0.3
        df = pd.DataFrame({
            "repeat": np.int32(r), "fold": np.int32(f), "twin": np.int32(twin),
            "sample_id": IDS[:N_TEST],
            "class_id": cls.astype(np.int32), "class_pred": pred.astype(np.int32),
            "class_ap": rng.uniform(size=N_TEST), "class_hit": right.astype(float),
            "box_ap": rng.uniform(size=N_TEST), "box_hit": right.astype(float)})
        df["class_map_term"] = df["class_ap"]
        df["box_map_term"] = df["box_ap"]
        for k, name in enumerate(("area", "squareness")):
            df[f"feat_{name}"] = feats[:, k]
            df[f"pred_{name}"] = feats[:, k] + noise * rng.normal(size=N_TEST)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def fake_results(backbone: str, setup: str, pred: pd.DataFrame) -> dict:
    from sklearn.metrics import r2_score

    units = []
    for (r, f), part in pred.groupby(["repeat", "fold"]):  # both twins: their mean
        test = {m: float(np.random.default_rng(int(r * 10 + f)).uniform(0.5, 0.9))
                for m in TABLE_METRICS}
        test["accuracy"] = float((part.class_id == part.class_pred).mean())
        test["r2"] = float(r2_score(part[["feat_area", "feat_squareness"]],
                                    part[["pred_area", "pred_squareness"]]))
        test["class_map_at_r"] = float(part.class_ap.mean())
        test["box_map_at_r"] = float(part.box_ap.mean())
        epochs = 5 + f
        proj = None if setup == "wtl" else {
            "epochs": epochs, "best_epoch": 3, "best_val_loss": 0.1,
            "train_loss": list(np.linspace(0.3, 0.1, epochs)),
            "val_loss": list(np.linspace(0.2, 0.12, epochs))}
        units.append({"repeat": int(r), "fold": int(f), "n_train": 20, "n_val": 10,
                      "n_test": N_TEST, "projection": proj, "test": test})
    summary = {}
    for m in TABLE_METRICS:
        vals = np.array([u["test"][m] for u in units])
        summary[f"{m}_mean"] = float(vals.mean())
        summary[f"{m}_std"] = float(vals.std(ddof=1))
    return {"backbone": backbone, "setup": setup, "classes": CLASSES, "heads": "probe",
            "features": ["area", "squareness"], "n_units": len(units), "n_repeats": REPEATS,
            "n_folds": FOLDS, "twins": TWINS, "units": units, "summary": summary}


def write_fake_report_inputs(root: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    for b in BACKBONES:
        for s in SETUPS:
            pred = fake_predictions(b, s)
            path = results_file(root / "results", b, s)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fake_results(b, s, pred)))
            pred.to_parquet(results_file(root / "results", b, s, ".predictions.parquet"))
            emb = rng.normal(size=(N_TEST, 4)).astype("float32")
            pq.write_table(pa.table({
                "sample_id": IDS[:N_TEST],
                "fold": pa.array(np.zeros(N_TEST, np.int32)),
                "class_id": pa.array(np.arange(N_TEST, dtype=np.int32) % 3),
                "box_label": pa.array(rng.integers(0, 3, N_TEST).astype(np.int32)),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 4)}),
                results_file(root / "results", b, s, ".test_embeddings.parquet"))
    scores = pd.DataFrame({"repeat": np.int32(0), "fold": np.repeat([0, 1], 20).astype(np.int32),
                           "sample_id": [f"s{i:03d}" for i in range(20)] * 2,
                           "role": ["train"] * 30 + ["val"] * 10,
                           "class_id": np.tile(np.arange(20) % 3, 2),
                           "score": rng.uniform(size=40)})
    scores.to_parquet(root / "scores.parquet")
    mi = {"mi": {"area": 0.21, "squareness": 0.05},
          "score": {c: {"count": 10, "mean": 0.2, "std": 0.1, "min": 0.0, "max": 0.5}
                    for c in CLASSES}}
    (root / "mi.json").write_text(json.dumps(mi))
    return {"results": root / "results", "scores": root / "scores.parquet",
            "mi": root / "mi.json"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    paths = write_fake_report_inputs(root)
    t2 = run_report(results_dir=paths["results"], scores=paths["scores"], mi=paths["mi"],
                    metrics_out=root / "metrics/table2.json", plots_dir=root / "plots",
                    report_out=root / "report.md", backbones=BACKBONES,
                    eval_params=EvalParams(repeats=REPEATS, resplit=False, alpha=0.05,
                                           retrieval_queries=2000, margin=MARGIN),
                    claims_out=root / "metrics/claims.json",
                    comparisons_out=root / "metrics/comparisons.json", split=fake_split(),
                    scenes=SCENES,
                    leakage={"test_image_in_train": 0.0, "test_scene_in_train_share": 0.25})
    return root, paths, t2


def test_table2_json_has_shallow_mean_std_keys(report):
    root, _, t2 = report
    data = json.loads((root / "metrics/table2.json").read_text())
    assert data == t2
    assert set(data) == set(BACKBONES) and set(data["dinov2"]) == set(SETUPS)
    row = data["dinov2"]["tg_matl"]
    assert set(row) == {f"{m}_{s}" for m in TABLE_METRICS for s in ("mean", "std")}
    pred = fake_predictions("dinov2", "tg_matl")
    expected = (pred.class_id == pred.class_pred).mean()  # every unit holds 60 samples
    assert row["accuracy_mean"] == pytest.approx(expected)


def test_report_markdown_layout(report):
    root, _, t2 = report
    md = (root / "report.md").read_text()
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| Setup | dinov2 accuracy"))
    assert header == "| Setup | dinov2 accuracy | dinov2 R² | clip accuracy | clip R² |"
    hard = next(line for line in lines if line.startswith("| CLTL (Hard) |"))
    assert next(line for line in lines if line.startswith("| MATL (GradNorm) † |"))
    acc = t2["dinov2"]["cltl_hard"]
    assert f"**{acc['accuracy_mean']:.3f} ± {acc['accuracy_std']:.3f}**" in hard  # best: bold
    assert "| cow | 10 | 0.200 | 0.100 | 0.000 | 0.500 |" in md  # Table I
    assert "Relevance score: Eq. 5" in md  # an mi.json without score_kind is Eq. 5
    assert "## Software" in md and "No versions recorded" in md  # fake results carry none
    for p in PLOT_FILES:
        assert f"(plots/{p})" in md


def test_table1_names_the_pointwise_score():
    from tgmatl.evaluation.report import table1_markdown

    mi = {"mi": {"area": 0.2}, "score_kind": "pointwise", "joint_mi": 0.31,
          "score": {"cow": {"count": 2, "mean": 0.5, "std": 0.1, "min": 0.4, "max": 0.6}}}
    md = table1_markdown(mi)
    assert "| joint geometry | 0.3100 |" in md and "`mi.score: pointwise`" in md
    with pytest.raises(InputError, match="mi.json"):
        table1_markdown({**mi, "score_kind": "eq6"})


def test_plots_are_png_files(report):
    root, _, _ = report
    for p in PLOT_FILES:
        data = (root / "plots" / p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_missing_results_are_named(report, tmp_path):
    _, paths, _ = report
    with pytest.raises(InputError, match=r"mae/train/wtl\.json: results missing"):
        read_results(paths["results"], ["mae"])
    bad = tmp_path / "results/dinov2/train"
    bad.mkdir(parents=True)
    (bad / "wtl.json").write_text("{}")
    with pytest.raises(InputError, match="not a results file"):
        read_results(tmp_path / "results", ["dinov2"], setups=["wtl"])
    with pytest.raises(InputError, match="summary has no"):
        table2({("x", "wtl"): {"summary": {}, "units": []}})


def test_pca_2d_is_deterministic_and_centred():
    x = np.random.default_rng(0).normal(size=(20, 5)) * [5, 1, 1, 1, 1]
    a, b = pca_2d(x), pca_2d(x.copy())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a.mean(axis=0), 0, atol=1e-9)
    assert a[:, 0].var() >= a[:, 1].var()
    assert pca_2d(np.ones((3, 1))).shape == (3, 2)


def _exp_state(rev, top, rand, acc, name=None):
    return {"rev": rev, "name": name, "error": None, "experiments": None, "data": {
        "rev": rev,
        "params": {"params.yaml": {"data": {"sampling": {"top_pct": top, "random_pct": rand}}}},
        "metrics": {"metrics/table2.json": {"data": {"clip": {"tg_matl": {
            "accuracy_mean": acc, "accuracy_std": 0.01, "r2_mean": acc / 2, "r2_std": 0.02}}}}}}}


def test_sweep_table_from_exp_show_json(repo_root, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_table",
                                                  repo_root / "scripts/sweep_table.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    rows = [
        {**_exp_state("workspace", 0.9, 0.9, 0.0)},  # ignored: may be stale
        {**_exp_state("abc123", 0.1, 0.1, 0.70), "experiments": [
            {"name": "exp-a", "executor": None, "revs": [_exp_state("r1", 0.2, 0.1, 0.75)]},
            {"name": "exp-b", "executor": None, "revs": [_exp_state("r2", 0.1, 0.2, 0.80)]},
            {"name": "exp-q", "executor": {"state": "queued"},
             "revs": [_exp_state("r3", 0.3, 0.3, 0.99)]},
            {"name": "exp-f", "executor": {"state": "failed"},
             "revs": [_exp_state("r4", 0.3, 0.1, 0.99)]}]},
    ]
    grid, skipped = sweep.collect(rows, "clip")
    assert set(grid) == {(0.1, 0.1), (0.2, 0.1), (0.1, 0.2)}
    assert skipped["queued or running"] == 1 and skipped["failed"] == 1
    md = sweep.markdown(grid, ["accuracy", "r2"], "clip")
    assert "| top \\ random | 0.1 | 0.2 |" in md
    assert "| 0.1 | 0.700 ± 0.010 | 0.800 ± 0.010 |" in md
    assert "| 0.2 | 0.750 ± 0.010 | – |" in md
    (tmp_path / "exp.json").write_text(json.dumps(rows))
    assert sweep.main([str(tmp_path / "exp.json"), "--out", str(tmp_path / "s.md"),
                       "--plot", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    conflict = json.loads(json.dumps(rows))
    conflict[1]["experiments"].append(
        {"name": "exp-c", "executor": None, "revs": [_exp_state("r5", 0.1, 0.1, 0.5)]})
    with pytest.raises(SystemExit, match="exp-c share top_pct=0.1, random_pct=0.1 but report"):
        sweep.collect(conflict, "clip")
    # another commit's results (`dvc exp show -A` or `-n 2`): stop, naming both baselines,
    # before any point is compared (the grid points differ here, so nothing else would notice)
    later = {**_exp_state("def4567890", 0.3, 0.1, 0.5), "name": "main", "experiments": [
        {"name": "exp-d", "executor": None, "revs": [_exp_state("r6", 0.3, 0.2, 0.6)]}]}
    with pytest.raises(SystemExit, match=r"2 baseline commits \(abc123: 3, main \(def4567\): 2"):
        sweep.collect(rows + [later], "clip")


def test_claims_and_comparisons(report):
    root, _, _ = report
    claims = json.loads((root / "metrics/claims.json").read_text())
    comps = json.loads((root / "metrics/comparisons.json").read_text())
    assert set(claims) == set(BACKBONES)
    # planted: CLTL (Hard) 0.95 against <= 0.8 for every other setup; TG-MATL 0.8 vs MATL 0.6
    for b in BACKBONES:
        assert claims[b]["cltl_hard_acc_highest"]["verdict"] == "holds"
        assert claims[b]["tg_matl_acc_above_matl"]["verdict"] == "holds"
        # TG-MATL's regressor is planted 3x less noisy: its R² is far above WTL's
        assert claims[b]["tg_matl_r2_below_wtl"]["verdict"] == "contradicted"
        row = claims[b]["tg_matl_acc_above_matl"]
        assert 0 < row["bound_low"] < row["diff"] and 0 <= row["p"] <= row["p_holm"] < 0.05
        assert row["bound_high"] is None and row["test"].startswith("one-sided")
        assert set(row) == {"verdict", "test", "covers", "diff", "bound_low", "bound_high", "p",
                            "p_holm", "reason"}
        # "highest of all" covers every configured setup
        assert claims[b]["cltl_hard_acc_highest"]["covers"] == [
            s for s in SETUPS if s != "cltl_hard"]
        # the A/A control: TG-MATL's twins are drawn alike, so it passes
        control = claims[b]["aa_control"]
        assert control["verdict"] == "passes" and control["accuracy_p_holm"] >= 0.05
        # minimum detectable effects, per metric, beside the comparisons
        assert set(comps[b]["mde"]) == {"accuracy", "r2", "class_map_at_r", "box_map_at_r"}
        assert 0 < comps[b]["mde"]["accuracy"] < 0.5
        assert comps[b]["vs_matl"]["accuracy_mde"] <= comps[b]["mde"]["accuracy"]
        assert 0.0 <= comps[b]["vs_matl"]["accuracy_train_share"] <= 1.0
    # across backbones: one row, under dinov2
    assert "tg_matl_r2_best_with_dinov2" in claims["dinov2"]
    assert "tg_matl_r2_best_with_dinov2" not in claims["clip"]
    vs = comps["dinov2"]["vs_matl"]
    t2 = json.loads((root / "metrics/table2.json").read_text())["dinov2"]
    want = t2["tg_matl"]["accuracy_mean"] - t2["matl"]["accuracy_mean"]
    assert vs["accuracy_diff"] == pytest.approx(want, abs=1e-6)  # units hold 60 samples each
    assert set(comps["dinov2"]) == {f"vs_{s}" for s in SETUPS if s != "tg_matl"} | {"mde"}
    assert vs["accuracy_p_holm"] >= vs["accuracy_p"]
    md = (root / "report.md").read_text()
    assert "## The paper's findings, checked on this run" in md
    assert "| TG-MATL's accuracy is above MATL's | dinov2 |" in md
    assert "## Leakage through shared images and scenes" in md


def test_report_on_a_subset_of_setups(report, tmp_path):
    """train.setups chosen by the user: the report covers exactly those and TG-MATL."""
    _, paths, _ = report
    some = ("wtl", "matl", "tg_matl")
    t2 = run_report(results_dir=paths["results"], scores=paths["scores"], mi=paths["mi"],
                    metrics_out=tmp_path / "t2.json", plots_dir=tmp_path / "plots",
                    report_out=tmp_path / "report.md", backbones=BACKBONES,
                    eval_params=EvalParams(repeats=REPEATS, resplit=False, alpha=0.05,
                                           retrieval_queries=2000, margin=MARGIN),
                    claims_out=tmp_path / "claims.json", comparisons_out=tmp_path / "c.json",
                    split=fake_split(), scenes=SCENES, setups=some)
    assert set(t2["dinov2"]) == set(some)
    md = (tmp_path / "report.md").read_text()
    assert "| MATL (0.5) |" in md and "CLTL (Hard)" not in md.split("## Does TG-MATL")[0]
    claims = json.loads((tmp_path / "claims.json").read_text())
    # findings whose setups did not run are rows 'not evaluable', with the reason
    assert claims["dinov2"]["cltl_hard_acc_highest"] == {
        "verdict": "not evaluable", "reason": "CLTL (Hard) is not in train.setups", "test": "",
        "covers": [], "diff": None, "bound_low": None, "bound_high": None, "p": None,
        "p_holm": None}
    assert claims["clip"]["tg_matl_r2_above_cltl_matl"]["reason"] == (
        "CLTL not in train.setups")
    assert claims["dinov2"]["tg_matl_acc_above_matl"]["verdict"] == "holds"
    assert "not evaluable**: CLTL (Hard) is not in train.setups" in md
