"""The setups of Table II as a registry: what each trains its projection with.

A setup is one :class:`Setup` entry (its label and whether it is the paper's come from
:data:`tgmatl.config.SETUP_LABELS` / ``PAPER_SETUPS``): whether it reads
``sampling.*`` (then it runs in the ``train_tg`` stage, so a sampling sweep reruns it alone),
its training loss, the validation criterion that picks its best epoch and, optionally, a
multi-task combiner (loss balancing) or a grid of variants chosen per unit on validation
retrieval. Adding a setup is a loss module plus one entry here; the fold loop
(:mod:`tgmatl.training.folds`) never branches on a setup's name.

A loss is an :class:`Objective`: task losses ``fn(y, w, pred, valid) -> [T]`` and fixed weights.
``y`` holds the columns :data:`TARGETS` (class id, discrete box label, then the normalised box
features), ``w`` the per-sample TG-MATL selection weight (1 for every other setup), ``valid`` the
padding mask of a batched run (``None``: every sample). :meth:`Setup.train_loss` turns it into
``fn(y, w, pred)`` for :class:`~tgmatl.training.loop.CompiledFit` (the weighted sum, or the [2]
task losses ``(L_cls, L_box)`` that a combiner weighs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgmatl.config import (
    PAPER_SETUPS,
    SAMPLING_SETUPS,
    SETUP_LABELS,
    SETUPS,
    SamplingParams,
    TrainParams,
)

LossFn = Callable[[Any, Any, Any], Any]
# fn(y, w, pred, valid) -> [T] task losses; valid: [B] bool padding mask of a batched run or None
TaskFn = Callable[[Any, Any, Any, Any], Any]
TARGETS = ("class_id", "box_label", "features...")


@dataclass(frozen=True)
class Objective:
    """A unit's loss as ``[T]`` task losses and the fixed weights that sum them: the form both
    trainers share (:class:`~tgmatl.training.loop.CompiledFit` one unit,
    :class:`~tgmatl.training.batched.BatchedFit` many, each with its own weights: matl_tuned's
    λ grid is then just more units of one run)."""

    tasks: TaskFn           # fn(y, w, pred, valid) -> [T]; valid [B] bool or None (all)
    weights: np.ndarray     # [T] float32

    @property
    def n_tasks(self) -> int:
        return len(self.weights)

    def scalar(self) -> LossFn:
        """``fn(y, w, pred)``: ``Σ_t weights_t · L_t`` (one unit, no padding)."""
        import tensorflow as tf

        tasks, weights = self.tasks, self.weights

        def loss(y, w, pred):
            return tf.reduce_sum(tf.constant(weights, tf.float32) * tasks(y, w, pred, None))

        return loss

    def unweighted(self) -> LossFn:
        """``fn(y, w, pred)`` -> the [T] task losses (a combiner weighs them)."""
        tasks = self.tasks
        return lambda y, w, pred: tasks(y, w, pred, None)


@dataclass(frozen=True)
class Setup:
    name: str
    uses_sampling: bool
    # (train params, sampling params or None) -> training objective; None: no projection (WTL)
    objective: Callable[[TrainParams, SamplingParams | None], Objective] | None
    # train params -> the hinge over all valid validation triplets (train.val_criterion)
    criterion: Callable[[TrainParams], Objective] | None
    # train params -> a combiner of the task losses (loss balancing), or None
    combiner: Callable[[TrainParams], Any] | None = None
    # train params -> the variants (e.g. one per λ) of which each unit keeps the one with the
    # best validation retrieval (mean of class and box MAP@R); variants may differ in
    # box_weight only (a batched run gives them one task function and per-unit weights)
    variants: Callable[[TrainParams], Sequence[TrainParams]] | None = None

    @property
    def label(self) -> str:
        return SETUP_LABELS[self.name]

    @property
    def in_paper(self) -> bool:
        return self.name in PAPER_SETUPS

    @property
    def trains_projection(self) -> bool:
        return self.objective is not None

    def train_loss(self, train: TrainParams, sampling: SamplingParams | None) -> LossFn:
        """``fn(y, w, pred)`` for :class:`~tgmatl.training.loop.CompiledFit`: the weighted sum,
        or the [T] task losses when a combiner weighs them."""
        if self.objective is None:
            raise ValueError(f"setup {self.name!r} trains no projection")
        obj = self.objective(train, sampling)
        return obj.unweighted() if self.combiner is not None else obj.scalar()

    def validation_objective(self, train: TrainParams) -> Objective:
        """What selects the best epoch: ``hinge_all`` (default) or ``loss``: the setup's own
        loss on every validation triplet (TG-MATL's un-masked, since the few selected
        validation samples form no valid triplet; a combiner's evaluation weights)."""
        if self.objective is None or self.criterion is None:
            raise ValueError(f"setup {self.name!r} trains no projection")
        if train.val_criterion == "hinge_all":
            return self.criterion(train)
        obj = self.objective(train, None)
        if self.combiner is not None:
            weights = np.asarray(self.combiner(train).eval_weights, np.float32)
            obj = dataclasses.replace(obj, weights=weights)
        return obj

    def validation_loss(self, train: TrainParams) -> LossFn | None:
        """:meth:`validation_objective` as ``fn(y, w, pred)``; ``None`` for a combiner's
        ``loss`` criterion (CompiledFit then weighs with the combiner's eval weights)."""
        if train.val_criterion == "loss" and self.combiner is not None:
            return None
        return self.validation_objective(train).scalar()


def _lam(train: TrainParams) -> np.ndarray:
    """``(1 - λ, λ)`` in float32 arithmetic, as the losses compute it."""
    lam = np.float32(train.box_weight)
    return np.array([np.float32(1.0) - lam, lam], np.float32)


ONE = np.ones(1, np.float32)


def _masks(valid, w=None, negatives: str = "all"):
    """(anchor mask, negative mask) from the padding mask ``valid`` and TG-MATL's selection
    ``w`` (None: no selection)."""
    import tensorflow as tf

    if w is None:
        return valid, valid
    selected = tf.reshape(w, [-1]) > 0.5
    if valid is not None:
        selected = tf.logical_and(selected, valid)
    return selected, (selected if negatives == "selected" else valid)


def _class_triplets(hard: bool) -> Callable[[TrainParams, SamplingParams | None], Objective]:
    def make(train: TrainParams, sampling: SamplingParams | None) -> Objective:
        import tensorflow as tf

        from tgmatl.training.losses import l2_normalize, triplet_loss

        def tasks(y, w, pred, valid):
            a, n = _masks(valid)
            return tf.reshape(triplet_loss(l2_normalize(pred), y[:, 0], train.margin, hard=hard,
                                           anchor_mask=a, negative_mask=n), [1])

        return Objective(tasks, ONE)

    return make


def _matl(selection: bool, normalize: bool = True):
    """MATL's ``(L_cls, L_box)``; with ``selection`` (TG-MATL, Eq. 14) over the triplets whose
    anchor and positive are selected (``w``), unless ``sampling`` is None (validation form)."""

    def make(train: TrainParams, sampling: SamplingParams | None) -> Objective:
        from tgmatl.training.losses import l2_normalize, matl_task_losses

        masked = selection and sampling is not None
        negatives = sampling.negatives if masked else "all"

        def tasks(y, w, pred, valid):
            a, n = _masks(valid, w if masked else None, negatives)
            emb = l2_normalize(pred) if normalize else pred
            return matl_task_losses(emb, y[:, 0], y[:, 1], train.margin, anchor_mask=a,
                                    negative_mask=n)

        return Objective(tasks, _lam(train))

    return make


def _cmatl(train: TrainParams, sampling: SamplingParams | None) -> Objective:
    from tgmatl.training.losses import cmatl_task_losses, l2_normalize

    def tasks(y, w, pred, valid):
        return cmatl_task_losses(l2_normalize(pred), y[:, 0], y[:, 2:], train.margin,
                                 valid=valid)

    return Objective(tasks, _lam(train))


def _class_hinge(train: TrainParams) -> Objective:
    import tensorflow as tf

    from tgmatl.training.losses import hinge_all_triplet_loss

    return Objective(lambda y, w, pred, valid: tf.reshape(
        hinge_all_triplet_loss(pred, y[:, 0], train.margin, valid), [1]), ONE)


def _matl_hinge(train: TrainParams) -> Objective:
    import tensorflow as tf

    from tgmatl.training.losses import hinge_all_triplet_loss

    return Objective(lambda y, w, pred, valid: tf.stack([
        hinge_all_triplet_loss(pred, y[:, 0], train.margin, valid),
        hinge_all_triplet_loss(pred, y[:, 1], train.margin, valid)]), _lam(train))


def _cmatl_criterion(train: TrainParams) -> Objective:
    """``(1 - λ)·hinge_all(class) + λ·L_geo``: the log-ratio term has no satisfied/violated
    split, so its plain mean over all validation triplets is already the right criterion."""
    import tensorflow as tf

    from tgmatl.training.losses import hinge_all_triplet_loss, log_ratio_loss

    return Objective(lambda y, w, pred, valid: tf.stack([
        hinge_all_triplet_loss(pred, y[:, 0], train.margin, valid),
        log_ratio_loss(pred, y[:, 2:], mask=valid)]), _lam(train))


def _uncertainty(train: TrainParams):
    from tgmatl.training.combiners import combiner_for

    return combiner_for("uncertainty", train.box_weight, train, uw_lr=train.uw_lr)


def _gradnorm(train: TrainParams):
    from tgmatl.training.combiners import combiner_for

    return combiner_for("gradnorm", train.box_weight, train)


def _lambda_grid(train: TrainParams) -> list[TrainParams]:
    return [dataclasses.replace(train, box_weight=lam) for lam in train.box_weight_grid]


REGISTRY: dict[str, Setup] = {s.name: s for s in (
    Setup("wtl", False, None, None),
    Setup("cltl", False, _class_triplets(hard=False), _class_hinge),
    Setup("cltl_hard", False, _class_triplets(hard=True), _class_hinge),
    Setup("matl", False, _matl(selection=False), _matl_hinge),
    Setup("tg_matl", True, _matl(selection=True), _matl_hinge),
    Setup("matl_tuned", False, _matl(selection=False), _matl_hinge, variants=_lambda_grid),
    # the combiners weigh the raw task losses (no second L2 normalisation, as before)
    Setup("matl_uw", False, _matl(selection=False, normalize=False), _matl_hinge,
          combiner=_uncertainty),
    Setup("matl_gradnorm", False, _matl(selection=False, normalize=False), _matl_hinge,
          combiner=_gradnorm),
    Setup("cmatl", False, _cmatl, _cmatl_criterion),
)}
assert tuple(REGISTRY) == SETUPS, "config.SETUPS lists the registry in the report's order"
assert {n for n, s in REGISTRY.items() if s.uses_sampling} == set(SAMPLING_SETUPS)


def get_setup(name: str) -> Setup:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown setup {name!r}; known: {', '.join(REGISTRY)}") from None
