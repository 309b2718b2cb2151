"""The batched trainer: a unit trained among others equals the same unit trained alone."""

import dataclasses
import functools

import numpy as np
import pytest

from tgmatl.config import SamplingParams, TrainParams
from tgmatl.errors import InputError
from tgmatl.params import ParamsError
from tgmatl.training import models
from tgmatl.training.batched import BatchedFit, UnitPlan
from tgmatl.training.loop import CompiledFit
from tgmatl.training.schedule import class_balanced_batches, fold_rng
from tgmatl.training.setups import get_setup

TRAIN = TrainParams(
    setups=("cltl",), box_weight_grid=(0.25, 0.75), uw_lr=0.01, projection=(16, 8), lr=1e-2,
    batch_size=16, margin=0.1, box_weight=0.5, epochs=6, patience=6, min_delta=0.0,
    val_criterion="hinge_all", gradnorm_alpha=1.5, gradnorm_lr=0.05, twins=1,
    unit_chunk_mb=64.0)
SAMPLING = SamplingParams(top_pct=0.3, random_pct=0.2, random="random", scope="dataset",
                          negatives="all")
D = 8
TOL = 1e-5
# (training, validation) sizes: batch widths 12 and 16, one to four steps, unequal validation
SIZES = ((40, 10), (12, 7), (60, 15))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 120
    cls = np.arange(n) % 3
    x = (rng.normal(size=(3, D))[cls] * 2 + rng.normal(size=(n, D))).astype(np.float32)
    feat = rng.uniform(size=(n, 2))
    y = np.column_stack([cls, (feat[:, 0] * 3).astype(int).clip(0, 2), feat]).astype(np.float32)
    return x, y, cls


def _plans(data, train, selection: bool, source: str = "fake") -> list[UnitPlan]:
    x, y, cls = data
    model = models.projection_head(D, train.projection)
    plans = []
    for u, (ntr, nva) in enumerate(SIZES):
        perm = fold_rng(0, u, "rows").permutation(len(x))
        tr, va = perm[:ntr], perm[ntr:ntr + nva]
        b = class_balanced_batches(cls[tr], train.batch_size, train.epochs,
                                   fold_rng(0, u, "batches"))
        w = ((fold_rng(0, u, "w").uniform(size=b.shape) < 0.5).astype(np.float32)
             if selection else None)
        plans.append(UnitPlan(x, y, tr, va, b, models.init_weights(model, fold_rng(0, u, "p")),
                              w, val_groups=cls[va], source=source))
    return plans


@functools.cache  # one trace per setup for the module: epochs, patience and budget are inputs
def _batched(setup: str, train: TrainParams = TRAIN) -> BatchedFit:
    spec = get_setup(setup)
    sampling = SAMPLING if spec.uses_sampling else None
    return BatchedFit([D, *train.projection], spec.objective(train, sampling),
                      spec.validation_objective(train), train.lr, 4,
                      combiner=spec.combiner(train) if spec.combiner else None,
                      chunk_mb=train.unit_chunk_mb)


@functools.cache
def _alone(setup: str, train: TrainParams = TRAIN) -> CompiledFit:
    spec = get_setup(setup)
    sampling = SAMPLING if spec.uses_sampling else None
    return CompiledFit(models.projection_head(D, train.projection),
                       spec.train_loss(train, sampling), train.lr, spec.validation_loss(train),
                       y_dim=4, combiner=spec.combiner(train) if spec.combiner else None)


def _compare(alone: CompiledFit, plan: UnitPlan, got, train: TrainParams) -> None:
    res, weights = got
    x, y = plan.x, plan.y
    want = alone.fit(plan.initial, x[plan.train_rows], y[plan.train_rows], x[plan.val_rows],
                     y[plan.val_rows], plan.batches, plan.weights, train.epochs, train.patience,
                     val_groups=plan.val_groups, min_delta=train.min_delta)
    assert (res.epochs, res.best_epoch) == (want.epochs, want.best_epoch)
    for a, b in zip(alone.model.get_weights(), weights, strict=True):
        np.testing.assert_allclose(b, a, atol=TOL)
    np.testing.assert_allclose(res.train_loss, want.train_loss, atol=TOL)
    np.testing.assert_allclose(res.val_loss, want.val_loss, atol=TOL)
    assert res.best_val_loss == pytest.approx(want.best_val_loss, abs=TOL)
    if want.task_weights is not None:
        np.testing.assert_allclose(res.task_weights, want.task_weights, atol=TOL)
        np.testing.assert_allclose(res.task_loss, want.task_loss, atol=TOL)
        np.testing.assert_allclose(res.weight_trace, want.weight_trace, atol=TOL)


@pytest.mark.parametrize("setup", ["cltl_hard", "tg_matl", "matl_uw", "matl_gradnorm", "cmatl"])
def test_batched_units_equal_units_trained_alone(data, setup):
    """Fixed epochs: weights, curves and (multi-task) weights of every unit to 1e-5, with
    units of different batch widths, step counts and validation sizes in one run."""
    spec = get_setup(setup)
    plans = _plans(data, TRAIN, selection=spec.uses_sampling)
    fit = _batched(setup)
    got = fit.fit(plans, TRAIN.epochs, TRAIN.patience, TRAIN.min_delta)
    alone = _alone(setup)
    for plan, g in zip(plans, got, strict=True):
        _compare(alone, plan, g, TRAIN)


def test_early_stopped_units_pick_the_same_best_epoch(data):
    train = dataclasses.replace(TRAIN, epochs=30, patience=3, min_delta=1e-3)
    plans = _plans(data, train, selection=False)
    got = _batched("matl").fit(plans, train.epochs, train.patience, train.min_delta)
    alone = _alone("matl")
    for plan, g in zip(plans, got, strict=True):
        _compare(alone, plan, g, train)
    assert len({g[0].epochs for g in got}) > 1, "units should stop at different epochs"


def test_lambda_grid_is_units_with_their_own_weights(data):
    """matl_tuned's λ values are units of one run (per-unit task and criterion weights)."""
    fit = _batched("matl")
    grid = (0.5, 0.25)
    plans = []
    for lam in grid:
        variant = dataclasses.replace(TRAIN, box_weight=lam)
        w = get_setup("matl").objective(variant, None).weights
        cw = get_setup("matl").validation_objective(variant).weights
        plans += [dataclasses.replace(p, task_weights=w, criterion_weights=cw)
                  for p in _plans(data, TRAIN, False)]
    got = fit.fit(plans, TRAIN.epochs, TRAIN.patience)
    for k, lam in enumerate(grid):
        alone = _alone("matl", TRAIN if lam == 0.5 else dataclasses.replace(TRAIN,
                                                                          box_weight=lam))
        for j in range(len(SIZES)):
            _compare(alone, plans[k * len(SIZES) + j], got[k * len(SIZES) + j], TRAIN)


def test_chunks_give_the_same_units_and_one_trace(data):
    plans = _plans(data, TRAIN, selection=False)
    fit = _batched("cltl_hard")
    traces = fit.traces
    one = fit.fit(plans, TRAIN.epochs, TRAIN.patience)
    fit.chunk_mb = 0.45  # train.unit_chunk_mb: one unit a chunk
    try:
        two = fit.fit(plans, TRAIN.epochs, TRAIN.patience)
        again = fit.fit(plans[:2], TRAIN.epochs, TRAIN.patience)
    finally:
        fit.chunk_mb = TRAIN.unit_chunk_mb
    for a, b in zip(one, two, strict=True):
        for wa, wb in zip(a[1], b[1], strict=True):
            np.testing.assert_allclose(wa, wb, atol=TOL)
    np.testing.assert_array_equal(again[1][1][0], two[1][1][0])
    # one trace for every chunk size, unit count and call
    assert fit.traces == max(traces, 1) == 1


def test_chunk_bounds_are_few_and_even():
    from tgmatl.training.batched import chunk_bounds

    # greedy packing needs 2 chunks for 32 equal units under a budget of 31: 16 and 16, not
    # 31 and 1 (a chunk runs until its last unit stops)
    assert chunk_bounds([1.0] * 32, 31) == [(0, 16), (16, 32)]
    assert chunk_bounds([1.0] * 32, 32) == [(0, 32)]
    assert chunk_bounds([1.0] * 5, 2) == [(0, 2), (2, 4), (4, 5)]
    # an even split that would not fit keeps the greedy one
    assert chunk_bounds([3.0, 1.0, 1.0, 1.0], 3) == [(0, 1), (1, 4)]


def test_bad_budget_and_mixed_widths_are_named(data):
    plans = _plans(data, TRAIN, selection=False)
    tiny = _batched("cltl", dataclasses.replace(TRAIN, unit_chunk_mb=0.01))
    with pytest.raises(ParamsError, match=r"train.unit_chunk_mb: 0.01 MB .* MB"):
        tiny.fit(plans, TRAIN.epochs, TRAIN.patience)
    x, y, _ = data
    wide = dataclasses.replace(plans[0], x=np.hstack([x, x]), source="clip")
    with pytest.raises(InputError, match="backbone .*clip"):
        _batched("cltl").fit([plans[1], wide], TRAIN.epochs, TRAIN.patience)
