"""CompiledFit with a vector of task losses and a combiner, on a tiny projection head."""

from __future__ import annotations

import numpy as np
import pytest

from tgmatl.training import (
    CompiledFit,
    FixedWeights,
    GradNorm,
    UncertaintyWeighting,
    class_balanced_batches,
    combiner_for,
    models,
)
from tgmatl.training.losses import matl_loss, matl_task_losses

MARGIN, LAM, EPOCHS = 0.1, 0.25, 8  # λ = 0.25: weights (0.75, 0.25), exact in binary


def _data(n=60, d=10, seed=0):
    """3 classes in d dims; box labels from a feature that shifts dimension 1."""
    rng = np.random.default_rng(seed)
    cls = np.arange(n) % 3
    feat = rng.uniform(size=n)
    x = rng.normal(size=(3, d))[cls] * 1.5 + rng.normal(size=(n, d))
    x[:, 1] += 3 * feat
    box = np.minimum((feat * 3).astype(int), 2)
    y = np.stack([cls, box], 1).astype(np.float32)
    tr, va = np.arange(n) < 45, np.arange(n) >= 45
    plan = class_balanced_batches(cls[tr], 16, EPOCHS, np.random.default_rng(1))
    return x.astype(np.float32), y, tr, va, plan


def _tasks(y, w, pred):
    return matl_task_losses(pred, y[:, 0], y[:, 1], MARGIN)


def _matl(y, w, pred):
    return matl_loss(pred, y[:, 0], y[:, 1], MARGIN, LAM)


@pytest.fixture(scope="module")
def setup():
    model = models.projection_head(10, (16, 8))
    init = models.init_weights(model, np.random.default_rng(2))
    return model, init, _data()


def _fit(fit, init, data, epochs=EPOCHS, patience=EPOCHS):
    x, y, tr, va, plan = data
    return fit.fit(init, x[tr], y[tr], x[va], y[va], plan, None, epochs, patience)


def test_fixed_weights_reproduce_single_loss_matl(setup):
    model, init, data = setup
    single = _fit(CompiledFit(model, _matl, 1e-2, y_dim=2), init, data)
    w_single = [w.copy() for w in model.get_weights()]
    fit = CompiledFit(model, _tasks, 1e-2, y_dim=2, combiner=FixedWeights((1 - LAM, LAM)))
    multi = _fit(fit, init, data)
    np.testing.assert_array_equal(multi.train_loss, single.train_loss)
    np.testing.assert_array_equal(multi.val_loss, single.val_loss)
    assert (multi.epochs, multi.best_epoch) == (single.epochs, single.best_epoch)
    for a, b in zip(w_single, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # multi-task extras: constant weights, per-epoch task losses whose weighted sum is the loss
    assert single.task_loss is None and single.task_summary() is None
    np.testing.assert_array_equal(multi.task_weights, [0.75, 0.25])
    assert multi.weight_trace.shape == (EPOCHS * data[4].shape[1], 2)
    np.testing.assert_allclose(multi.task_loss @ [0.75, 0.25], multi.train_loss, rtol=1e-5)
    summary = multi.task_summary()
    assert summary["combiner"]["kind"] == "fixed" and summary["task_weights"] == [0.75, 0.25]
    assert len(summary["task_loss"]) == multi.epochs


def test_uncertainty_log_vars_move_and_restore(setup):
    model, init, data = setup
    comb = UncertaintyWeighting(2, eval_weights=(1 - LAM, LAM), lr=0.05)
    fit = CompiledFit(model, _tasks, 1e-2, y_dim=2, combiner=comb)
    res = _fit(fit, init, data, patience=3)
    s = res.log_vars
    # hinge losses well below 1: s_t moves towards log L_t < 0, i.e. weights above 1
    assert np.all(s < -0.05) and np.all(s > comb.bounds[0])
    np.testing.assert_allclose(res.task_weights, np.exp(-s), rtol=1e-6)
    steps = data[4].shape[1]
    # the reported state is the restored (best) epoch's, not the last step's
    np.testing.assert_allclose(res.weight_trace[res.best_epoch * steps - 1], res.task_weights,
                               rtol=1e-6)
    # validation is MATL's (1 - λ, λ) combination, whatever the learned weights
    x, y, tr, va, _ = data
    want = float(_matl(y[va], None, fit.predict(x[va])))
    assert res.best_val_loss == pytest.approx(want, rel=1e-5)
    # a second fit starts again from s = 0: same result
    again = _fit(fit, init, data, patience=3)
    np.testing.assert_array_equal(again.log_vars, s)
    np.testing.assert_array_equal(again.train_loss, res.train_loss)


def test_uncertainty_clips_a_task_stuck_at_zero(setup):
    """A task loss of exactly 0 pulls its s_t down by Adam's step every step: the clip holds it
    at the lower bound (weight e^4) instead of letting the weight explode."""
    import tensorflow as tf

    model, init, data = setup

    def tasks(y, w, pred):
        return tf.stack([matl_task_losses(pred, y[:, 0], y[:, 1], MARGIN)[0], tf.constant(0.0)])

    comb = UncertaintyWeighting(2, lr=1.0)
    res = _fit(CompiledFit(model, tasks, 1e-2, y_dim=2, combiner=comb), init, data)
    assert res.weight_trace[-1, 1] == pytest.approx(np.exp(4.0), rel=1e-6)
    assert res.weight_trace.max() <= np.exp(4.0) * (1 + 1e-6)


def test_gradnorm_weights_sum_to_t_every_step(setup):
    model, init, data = setup
    comb = GradNorm(2, alpha=1.5, lr=0.05, eval_weights=(1 - LAM, LAM))
    fit = CompiledFit(model, _tasks, 1e-2, y_dim=2, combiner=comb)
    assert comb.kernel is model.get_layer("dense_1").kernel.value  # the last Dense kernel
    res = _fit(fit, init, data)
    trace = res.weight_trace
    assert trace.shape == (EPOCHS * data[4].shape[1], 2)
    np.testing.assert_allclose(trace.sum(axis=1), 2.0, rtol=1e-6)
    assert np.all(trace > 0)
    assert np.abs(trace - 1.0).max() > 0.05  # the weights do move
    steps = data[4].shape[1]
    np.testing.assert_allclose(res.weight_trace[res.best_epoch * steps - 1], res.task_weights,
                               rtol=1e-6)
    again = _fit(fit, init, data)  # the state (w, L(0), Adam) is reset per fit
    np.testing.assert_array_equal(again.weight_trace, trace)


def test_combiner_for_and_validation():
    from tgmatl.config import TrainParams

    train = TrainParams(
        setups=("wtl", "cltl", "cltl_hard", "matl"), box_weight_grid=(0.25, 0.75), uw_lr=0.01,
        projection=(8,), lr=1e-3, batch_size=16, margin=0.1, box_weight=0.25,
        epochs=1, patience=1, min_delta=0.0, val_criterion="loss", gradnorm_alpha=1.2,
        gradnorm_lr=0.02, twins=1, unit_chunk_mb=256.0)
    fixed = combiner_for("fixed", train.box_weight)
    assert isinstance(fixed, FixedWeights) and fixed.fixed.tolist() == [0.75, 0.25]
    uw = combiner_for("uncertainty", train.box_weight)
    assert isinstance(uw, UncertaintyWeighting) and uw.eval_weights.tolist() == [0.75, 0.25]
    gn = combiner_for("gradnorm", train.box_weight, train)
    assert (gn.alpha, gn.step_size, gn.initial.tolist()) == (1.2, 0.02, [1.0, 1.0])
    with pytest.raises(ValueError, match="train params"):
        combiner_for("gradnorm", 0.5)
    with pytest.raises(ValueError, match="not one of"):
        combiner_for("other", 0.5)
    with pytest.raises(ValueError, match="weights"):
        FixedWeights((0.5, -0.1))
    with pytest.raises(ValueError, match="eval_weights"):
        UncertaintyWeighting(2, eval_weights=(1.0,))
    with pytest.raises(ValueError, match="alpha"):
        GradNorm(2, alpha=0.0, lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        GradNorm(2, alpha=1.0, lr=-1.0)
    shared = UncertaintyWeighting(2)
    shared.build(models.projection_head(4, (3,)))
    with pytest.raises(ValueError, match="one combiner per CompiledFit"):
        shared.build(models.projection_head(4, (3,)))
