"""Batch plans, the compiled training loop, the fold loop and the train stage's outputs."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tgmatl.config import HeadsParams, SamplingParams, TrainParams
from tgmatl.errors import InputError
from tgmatl.training import (
    class_balanced_batches,
    load_inputs,
    run_train_stage,
    shuffled_batches,
    stratified_order,
    train_setup,
    val_bounds,
)

CLASSES = ["cow", "deer", "horse"]
TRAIN = TrainParams(
    setups=("wtl", "cltl", "cltl_hard", "matl"), box_weight_grid=(0.25, 0.75), uw_lr=0.01,
    projection=(32, 8), lr=1e-3, batch_size=16, margin=0.1, box_weight=0.5,
    epochs=25, patience=5, min_delta=0.0, val_criterion="loss", gradnorm_alpha=1.5,
    gradnorm_lr=0.01, twins=1, unit_chunk_mb=256.0)
HEADS = HeadsParams(kind="mlp", l2_grid=(0.1, 1.0, 10.0), inner_folds=3, hidden=0, lr=1e-2,
                    batch_size=16, epochs=60, patience=10)
SAMPLING = SamplingParams(top_pct=0.3, random_pct=0.2, random="random", scope="dataset",
                          negatives="all")


def write_fake_inputs(root: Path, n: int = 90, d: int = 16, folds: int = 3, seed: int = 0,
                      sep: float = 3.0, repeats: int = 1) -> dict[str, Path]:
    """Tiny parquet inputs in the data contracts' layout: 3 well separated classes in ``d``
    dimensions, two box features that shift the first two dimensions, half the samples test
    (one fixed test split; each repeat deals the folds anew)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % 3
    ids = [f"s{i:05d}" for i in range(n)]
    feat = rng.uniform(size=(n, 2))
    x = rng.normal(size=(3, d))[cls] * sep + rng.normal(size=(n, d))
    x[:, :2] += 3 * feat
    paths = {k: root / f"{k}.parquet" for k in ("samples", "embeddings", "split", "scores",
                                                 "masks")}
    pd.DataFrame({"sample_id": ids, "class_id": cls, "class_name": [CLASSES[c] for c in cls],
                  "image_path": [f"img{i // 2:05d}.png" for i in range(n)]}  # pairs share one
                 ).to_parquet(paths["samples"])
    emb = pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).ravel()), d)
    pq.write_table(pa.table({"sample_id": ids, "embedding": emb}), paths["embeddings"])
    test = np.zeros(n, bool)
    test[rng.permutation(n)[: n // 2]] = True
    splits, rows, masks = [], [], []
    for r in range(repeats):
        fold = np.full(n, -1, np.int32)
        fold[~test] = (np.arange((~test).sum()) + r) % folds
        splits.append(pd.DataFrame({"repeat": np.int32(r), "sample_id": ids, "test": test,
                                    "fold": fold}))
        for f in range(folds):
            role = np.where(test, "test", np.where(fold == f, "val", "train"))
            rows.append(pd.DataFrame({
                "repeat": np.int32(r), "fold": np.int32(f), "sample_id": ids, "role": role,
                "class_id": cls, "feat_area": feat[:, 0], "feat_squareness": feat[:, 1],
                "box_label": (feat[:, 0] * 3).astype(np.int32).clip(0, 2),
                "score": feat.sum(1)}))
            tr = np.flatnonzero(role == "train")
            masks.append(pd.DataFrame({"repeat": np.int32(r), "fold": np.int32(f),
                                       "sample_id": [ids[i] for i in tr],
                                       "mask": rng.uniform(size=len(tr)) < 0.4}))
    pd.concat(splits, ignore_index=True).to_parquet(paths["split"])
    table = pa.Table.from_pandas(pd.concat(rows, ignore_index=True), preserve_index=False)
    meta = {"features": ["area", "squareness"], "mi": {}}
    pq.write_table(table.replace_schema_metadata({b"tgmatl": json.dumps(meta).encode()}),
                   paths["scores"])
    pd.concat(masks, ignore_index=True).to_parquet(paths["masks"])
    return paths


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> dict[str, Path]:
    return write_fake_inputs(tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def inputs(fake):
    return load_inputs(fake["embeddings"], fake["split"], fake["scores"], masks=fake["masks"],
                       samples=fake["samples"])


# --- batch plans ----------
def test_class_balanced_batches_cover_every_sample_with_positives():
    labels = np.array([0] * 30 + [1] * 13 + [2] * 20 + [3] * 3)
    plan = class_balanced_batches(labels, 32, epochs=5, rng=np.random.default_rng(0))
    assert plan.shape[:2] == (5, 3) and plan.shape[2] >= 32
    for epoch in plan:
        assert set(epoch.ravel()) == set(range(len(labels)))  # every sample, every epoch
        for batch in epoch:
            assert len(set(batch)) == len(batch)  # no duplicate inside a batch
            counts = np.bincount(labels[batch], minlength=4)
            assert (counts >= 2).all()  # positives for every class
    again = class_balanced_batches(labels, 32, epochs=5, rng=np.random.default_rng(0))
    assert np.array_equal(plan, again)


def test_small_sets_fit_one_batch_and_shuffled_batches_cover():
    plan = class_balanced_batches(np.array([0, 0, 1, 1, 1]), 32, 2, np.random.default_rng(0))
    assert plan.shape == (2, 1, 5)
    sh = shuffled_batches(10, 4, 3, np.random.default_rng(1))
    assert sh.shape == (3, 3, 4)
    for epoch in sh:
        assert set(epoch.ravel()) == set(range(10))


def test_validation_chunks_hold_every_class():
    labels = np.repeat([0, 1, 2], [300, 100, 200])
    order = stratified_order(labels)
    assert sorted(order) == list(range(600))
    bounds = val_bounds(600, chunk=256)
    assert bounds.tolist() == [[0, 200], [200, 400], [400, 600]]
    for a, b in bounds:
        assert set(labels[order[a:b]]) == {0, 1, 2}


# --- the compiled loop ----------
def _linear_fit(epochs, patience, val_sign=1.0, min_delta=0.0):
    import keras
    import tensorflow as tf

    from tgmatl.training import CompiledFit, models

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    model = models.regression_head(3, 1, hidden=0)

    def mse(yt, w, p):
        return tf.reduce_mean(tf.square(p - yt))

    fit = CompiledFit(model, mse, lr=0.05, y_dim=1)
    init = models.init_weights(model, np.random.default_rng(1), x)
    plan = shuffled_batches(40, 8, epochs, np.random.default_rng(2))
    res = fit.fit(init, x, y, x[:10], val_sign * y[:10], plan, None, epochs, patience,
                  min_delta=min_delta)
    return res, model, fit, init, keras


def test_min_delta_ends_a_creeping_run():
    """An improvement must beat the best by more than min_delta: with one larger than any gain
    the first epoch stays best and the run ends after 1 + patience epochs; the gains of the
    plain run (min_delta 0) are real but each below that, so it runs longer."""
    base, *_ = _linear_fit(epochs=60, patience=3)
    gains = -np.diff(base.val_loss[: base.best_epoch])
    assert base.epochs > 4 and gains.max() > 0
    short, *_ = _linear_fit(epochs=60, patience=3, min_delta=float(base.val_loss[0]))
    assert short.best_epoch == 1 and short.epochs == 4
    assert short.best_val_loss == pytest.approx(short.val_loss[0])
    # a delta between the gains: stops no later than the plain run, never earlier than 4
    mid, *_ = _linear_fit(epochs=60, patience=3, min_delta=float(np.median(gains[gains > 0])))
    assert 4 <= mid.epochs <= base.epochs
    assert mid.val_loss[mid.best_epoch - 1] == pytest.approx(mid.best_val_loss)


def test_loss_decreases_and_ceiling_respected():
    res, *_ = _linear_fit(epochs=40, patience=40)
    assert res.epochs == 40 and len(res.train_loss) == 40 == len(res.val_loss)
    assert res.train_loss[-1] < 0.05 * res.train_loss[0]
    assert res.best_epoch == int(np.argmin(res.val_loss)) + 1
    assert res.best_val_loss == pytest.approx(res.val_loss.min())


def test_early_stopping_restores_best_weights():
    # validation targets of the opposite sign: validation loss is best after epoch 1 and only
    # grows, so training stops after 1 + patience epochs and restores epoch 1's weights
    res, model, fit, init, _ = _linear_fit(epochs=50, patience=4, val_sign=-1.0)
    assert res.best_epoch == 1 and res.epochs == 5
    restored = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    plan = shuffled_batches(40, 8, 50, np.random.default_rng(2))
    one = fit.fit(init, x, y, x[:10], -y[:10], plan[:1], None, 1, 4)  # the same first epoch
    assert one.epochs == 1
    for a, b in zip(restored, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    pred = fit.predict(x[:10])
    assert np.mean((pred + y[:10]) ** 2) == pytest.approx(res.best_val_loss, rel=1e-5)


# --- fold loop ----------
def test_inputs_are_aligned_and_checked(inputs, fake, tmp_path):
    assert inputs.class_names == CLASSES and inputs.feature_names == ["area", "squareness"]
    assert inputs.n_folds == 3 and inputs.n_units == 3 and inputs.x.shape == (90, 16)
    t = inputs.units[0, 0]
    assert t.mask is not None and not t.mask[t.role != "train"].any()
    # an embedding file that lacks a sample: the error names the file and the sample
    table = pq.read_table(fake["embeddings"]).slice(1)
    pq.write_table(table, tmp_path / "short.parquet")
    with pytest.raises(InputError, match=r"short\.parquet: no embedding for sample s00000"):
        load_inputs(tmp_path / "short.parquet", fake["split"], fake["scores"])
    # roles in scores that disagree with the split
    sc = pd.read_parquet(fake["scores"])
    sc.loc[(sc["fold"] == 1) & (sc["role"] == "val"), "role"] = "train"
    sc.to_parquet(tmp_path / "bad_scores.parquet")
    with pytest.raises(InputError, match="repeat 0, fold 1, sample .* has role 'train'"):
        load_inputs(fake["embeddings"], fake["split"], tmp_path / "bad_scores.parquet")


@pytest.mark.parametrize("setup", ["wtl", "cltl"])
def test_separable_classes_are_learned(inputs, setup):
    results, runs = train_setup(inputs, setup, TRAIN, HEADS, None, seed=0, progress=False)
    assert results["summary"]["accuracy_mean"] >= 0.9
    assert results["summary"]["class_map_at_r_mean"] >= 0.9
    assert len(results["units"]) == 3
    for r in runs:
        assert r.heads.classifier["kind"] == "mlp"
        assert r.heads.classifier["epochs"] >= r.heads.classifier["best_epoch"] >= 1
        if setup == "cltl":
            # the triplet loss decreases on the training batches
            assert r.projection.train_loss[-1] < r.projection.train_loss[0]
            assert r.projection.epochs <= TRAIN.epochs
            np.testing.assert_allclose(np.linalg.norm(r.test_embedding, axis=1), 1, rtol=1e-4)
        else:
            assert r.projection is None


def test_tg_matl_validates_on_all_triplets(inputs):
    """With no sample selected the masked loss is 0 and nothing trains; the validation loss
    (un-masked MATL over all validation triplets) must still be informative (> 0)."""
    units = {u: dataclasses.replace(t, mask=np.zeros_like(t.mask))
             for u, t in inputs.units.items()}
    empty = dataclasses.replace(inputs, units=units)
    _, runs = train_setup(empty, "tg_matl", TRAIN, HEADS, SAMPLING, seed=0, progress=False)
    for r in runs:
        assert r.projection.train_loss.max() == 0.0
        assert (r.projection.val_loss > 0).all()
        np.testing.assert_allclose(r.projection.val_loss, r.projection.val_loss[0], rtol=1e-6)


def test_tg_matl_batch_scope_runs(inputs):
    batch = dataclasses.replace(SAMPLING, scope="batch", random="next", negatives="selected")
    results, runs = train_setup(inputs, "tg_matl", TRAIN, HEADS, batch, seed=0, progress=False)
    assert results["summary"]["accuracy_mean"] >= 0.8
    assert all(r.projection.train_loss.max() > 0 for r in runs)


# --- the stage ----------
def _run_stage(fake, out_dir: Path, setups=("tg_matl",)):
    return run_train_stage(
        backbone="fake", setups=setups, embeddings=fake["embeddings"], split=fake["split"],
        scores=fake["scores"], masks=fake["masks"], samples=fake["samples"],
        out=out_dir / "results", models=out_dir / "models",
        train=TRAIN, heads=HEADS, sampling=SAMPLING, seed=3, progress=False)


def test_stage_outputs_and_determinism(fake, tmp_path):
    from tgmatl.training.folds import batched_trainer, head_trainer, projection_trainer

    _run_stage(fake, tmp_path / "a")
    batched_trainer.cache_clear()  # the second run builds and traces fresh models
    projection_trainer.cache_clear()
    head_trainer.cache_clear()
    _run_stage(fake, tmp_path / "b")
    a = (tmp_path / "a/results/tg_matl.json").read_bytes()
    assert a == (tmp_path / "b/results/tg_matl.json").read_bytes()  # same params: same bytes
    res = json.loads(a)
    assert res["backbone"] == "fake" and res["setup"] == "tg_matl" and res["n_folds"] == 3
    assert res["n_units"] == 3 and res["n_repeats"] == 1
    import tensorflow as tf

    env = res["environment"]  # the versions behind the numbers
    assert env["packages"]["tensorflow"] == tf.__version__ and env["python"].count(".") == 2
    fold = res["units"][0]
    assert {"accuracy", "f1_macro", "accuracy_cow", "r2", "r2_area", "mse", "class_p_at_1",
            "class_map_at_r", "box_p_at_1", "box_map_at_r"} <= set(fold["test"])
    assert 1 <= fold["projection"]["best_epoch"] <= fold["projection"]["epochs"]
    assert {"accuracy_mean", "accuracy_std", "r2_mean", "r2_std"} <= set(res["summary"])
    emb = pq.read_table(tmp_path / "a/results/tg_matl.test_embeddings.parquet")
    assert emb.num_rows == 45 and emb.equals(
        pq.read_table(tmp_path / "b/results/tg_matl.test_embeddings.parquet"))
    pred = pd.read_parquet(tmp_path / "a/results/tg_matl.predictions.parquet")
    assert len(pred) == 3 * 45 and set(pred["fold"]) == {0, 1, 2}
    assert {"class_id", "class_pred", "class_ap", "class_hit", "box_ap", "feat_area",
            "pred_area"} <= set(pred.columns)
    per_unit = pred[pred["fold"] == 0]
    assert (per_unit["class_id"] == per_unit["class_pred"]).mean() == pytest.approx(
        fold["test"]["accuracy"], abs=1e-6)
    assert per_unit["class_ap"].mean() == pytest.approx(fold["test"]["class_map_at_r"],
                                                        abs=1e-6)
    models = tmp_path / "a/models/tg_matl"
    assert sorted(p.name for p in (tmp_path / "a/results").iterdir()) == [
        "tg_matl.json", "tg_matl.predictions.parquet", "tg_matl.test_embeddings.parquet"]
    for f in range(3):
        assert (models / f"r0_f{f}.projection.weights.h5").is_file()
    curves = models / "dvclive/plots/metrics/r0_f0/projection/val_loss.tsv"
    assert len(curves.read_text().splitlines()) == fold["projection"]["epochs"] + 1
    assert not list(tmp_path.rglob("dvc.yaml"))  # dvclive never writes a dvc.yaml


def test_seed_twins_keep_twin_0_and_average_per_unit(fake, tmp_path):
    """train.twins: each unit trains twice; twin 0 is the single run's unit, twin 1 differs;
    the summary is over units of the twins' means; predictions gain a twin column."""
    from tgmatl.training.folds import summarise, twin_means

    single = json.loads(json.dumps(_run_stage(fake, tmp_path / "one")["tg_matl"]))
    res = run_train_stage(
        backbone="fake", setups=["tg_matl"], embeddings=fake["embeddings"],
        split=fake["split"], scores=fake["scores"], masks=fake["masks"],
        samples=fake["samples"], out=tmp_path / "two/results", models=tmp_path / "two/models",
        train=dataclasses.replace(TRAIN, twins=2), heads=HEADS, sampling=SAMPLING, seed=3,
        progress=False)["tg_matl"]
    res = json.loads(json.dumps(res))
    assert res["n_units"] == 3 and res["twins"] == 2 and len(res["units"]) == 6
    assert [(u["fold"], u["twin"]) for u in res["units"]] == [
        (f, k) for f in range(3) for k in range(2)]
    twin0 = [u for u in res["units"] if u["twin"] == 0]
    for a, b in zip(twin0, single["units"], strict=True):
        assert a["test"] == b["test"] and a["projection"] == b["projection"]
    twin1 = [u for u in res["units"] if u["twin"] == 1]
    assert any(a["projection"]["val_loss"] != b["projection"]["val_loss"]
               for a, b in zip(twin0, twin1, strict=True))
    assert res["summary"] == summarise(twin_means(res["units"]))
    pred = pd.read_parquet(tmp_path / "two/results/tg_matl.predictions.parquet")
    assert pred["twin"].dtype == np.int32 and len(pred) == 2 * 3 * 45
    assert (tmp_path / "two/models/tg_matl/r0_f0_t1.projection.weights.h5").is_file()


def test_stage_script_reports_missing_masks(fake, tmp_path, repo_root):
    proc = subprocess.run(
        [sys.executable, str(repo_root / "stages/train.py"), "--params",
         str(repo_root / "params.yaml"), "--backbone", "fake", "--setup", "tg_matl",
         "--embeddings", str(fake["embeddings"]), "--split", str(fake["split"]),
         "--scores", str(fake["scores"]), "--out", str(tmp_path / "r"),
         "--models", str(tmp_path / "m")],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "need --masks" in proc.stderr


# --- setups beyond the paper and probe heads ----------
def test_every_registered_setup_trains_on_a_unit(inputs):
    from tgmatl.training import REGISTRY

    probe = dataclasses.replace(HEADS, kind="probe")
    for name, spec in REGISTRY.items():
        sampling = SAMPLING if spec.uses_sampling else None
        results, runs = train_setup(inputs, name, TRAIN, probe, sampling, seed=0,
                                    progress=False)
        assert results["label"] == spec.label and results["in_paper"] == spec.in_paper
        row = results["units"][0]
        assert row["classifier"]["kind"] == "probe" and row["classifier"]["l2"] in (0.1, 1, 10)
        assert results["summary"]["accuracy_mean"] >= 0.8, name
        proj = row["projection"]
        if name == "matl_tuned":
            # one variant per λ of the grid; the chosen one has the best validation retrieval
            tried = proj["tried"]
            assert [t["box_weight"] for t in tried] == list(TRAIN.box_weight_grid)
            best = max(tried, key=lambda t: t["val_retrieval"])
            assert proj["box_weight"] == best["box_weight"]
        if name in ("matl_uw", "matl_gradnorm"):
            assert len(proj["task_weights"]) == 2
        if name == "matl_gradnorm":
            assert sum(proj["task_weights"]) == pytest.approx(2.0, rel=1e-5)


def test_hinge_all_criterion_is_the_default_validation(inputs):
    hinge = dataclasses.replace(TRAIN, val_criterion="hinge_all")
    _, runs = train_setup(inputs, "cltl_hard", hinge, HEADS, None, seed=0, progress=False)
    from tgmatl.training.folds import projection_model
    from tgmatl.training.losses import hinge_all_triplet_loss

    r = runs[-1]
    t = inputs.units[r.unit]
    va = t.role == "val"
    # the restored epoch's validation value is the hinge over all validation triplets
    model = projection_model(inputs.x.shape[1], TRAIN.projection)
    model.set_weights(r.weights)
    zv = model.predict(inputs.x[va], verbose=0)
    want = float(hinge_all_triplet_loss(zv, t.class_id[va], TRAIN.margin))
    assert r.projection.best_val_loss == pytest.approx(want, rel=1e-4)


def test_retrieval_queries_cap_draws_the_same_queries_for_every_setup(inputs):
    """eval.retrieval_queries: per unit at most that many test queries, the same samples for
    every setup (paired), every test sample still a reference."""
    probe = dataclasses.replace(HEADS, kind="probe")
    short = dataclasses.replace(TRAIN, epochs=2)
    queried = {}
    for setup in ("wtl", "cltl"):
        results, runs = train_setup(inputs, setup, short, probe, None, seed=0, progress=False,
                                    retrieval_queries=5)
        assert results["retrieval_queries"] == 5
        for r, row in zip(runs, results["units"], strict=True):
            assert r.n_test > 5 and r.n_queries == row["n_queries"] == 5
            asked = r.per_sample["class_hit"].notna()
            assert asked.sum() == 5 and r.per_sample["class_map_term"].notna().all()
            queried.setdefault(r.unit, []).append(set(r.per_sample["sample_id"][asked]))
    assert all(a == b for a, b in queried.values())
