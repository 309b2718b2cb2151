"""The setups of Table II as a registry: what each trains its projection with.

A setup is one :class:`Setup` entry (its label and whether it is the paper's come from
:data:`tgmatl.config.SETUP_LABELS` / ``PAPER_SETUPS``): whether it reads
``sampling.*`` (then it runs in the ``train_tg`` stage, so a sampling sweep reruns it alone),
its training loss, the validation criterion that picks its best epoch and, optionally, a
multi-task combiner (loss balancing) or a grid of variants chosen per unit on validation
retrieval. Adding a setup is a loss module plus one entry here; the fold loop
(:mod:`tgmatl.training.folds`) never branches on a setup's name.

Losses here are ``fn(y, w, pred)`` for :class:`~tgmatl.training.loop.CompiledFit`: ``y`` holds
the columns :data:`TARGETS` (class id, discrete box label, then the normalised box features),
``w`` the per-sample TG-MATL selection weight (1 for every other setup). With a combiner the
loss returns the [2] task losses ``(L_cls, L_box)`` and the combiner weighs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tgmatl.config import (
    PAPER_SETUPS,
    SAMPLING_SETUPS,
    SETUP_LABELS,
    SETUPS,
    SamplingParams,
    TrainParams,
)

LossFn = Callable[[Any, Any, Any], Any]
TARGETS = ("class_id", "box_label", "features...")


@dataclass(frozen=True)
class Setup:
    name: str
    uses_sampling: bool
    # (train params, sampling params or None) -> training loss; None: no projection (WTL)
    train_loss: Callable[[TrainParams, SamplingParams | None], LossFn] | None
    # train params -> the hinge over all valid validation triplets (train.val_criterion)
    criterion: Callable[[TrainParams], LossFn] | None
    # train params -> a combiner of the task losses (loss balancing), or None
    combiner: Callable[[TrainParams], Any] | None = None
    # train params -> the variants (e.g. one per λ) of which each unit keeps the one with the
    # best validation retrieval (mean of class and box MAP@R)
    variants: Callable[[TrainParams], Sequence[TrainParams]] | None = None

    @property
    def label(self) -> str:
        return SETUP_LABELS[self.name]

    @property
    def in_paper(self) -> bool:
        return self.name in PAPER_SETUPS

    @property
    def trains_projection(self) -> bool:
        return self.train_loss is not None

    def validation_loss(self, train: TrainParams) -> LossFn | None:
        """What selects the best epoch: ``hinge_all`` (default) or ``loss``: the setup's own
        loss on every validation triplet (TG-MATL's un-masked, since the few selected
        validation samples form no valid triplet; a combiner's fixed evaluation weights,
        ``None`` here)."""
        if self.train_loss is None or self.criterion is None:
            raise ValueError(f"setup {self.name!r} trains no projection")
        if train.val_criterion == "hinge_all":
            return self.criterion(train)
        if self.combiner is not None:
            return None
        return self.train_loss(train, None)


def _keras(loss) -> LossFn:
    """A ``keras_losses`` wrapper (y_true: class, box, mask, features) as ``fn(y, w, pred)``."""
    from tgmatl.training.losses import insert_mask

    return lambda y, w, pred: loss(insert_mask(y, w), pred)


def _paper_loss(name: str) -> Callable[[TrainParams, SamplingParams | None], LossFn]:
    def make(train: TrainParams, sampling: SamplingParams | None) -> LossFn:
        from tgmatl.training.losses import loss_for_setup

        # sampling None: TG-MATL's validation form, the un-masked MATL loss
        if name == "tg_matl" and sampling is None:
            return _keras(loss_for_setup("matl", train, None))
        return _keras(loss_for_setup(name, train, sampling))

    return make


def _cmatl_loss(train: TrainParams, sampling: SamplingParams | None) -> LossFn:
    from tgmatl.training.losses import CMATLLoss

    return _keras(CMATLLoss(train.margin, train.box_weight))


def _matl_tasks(train: TrainParams, sampling: SamplingParams | None) -> LossFn:
    from tgmatl.training.losses import matl_task_losses

    return lambda y, w, pred: matl_task_losses(pred, y[:, 0], y[:, 1], train.margin)


def _class_hinge(train: TrainParams) -> LossFn:
    from tgmatl.training.losses import hinge_all_triplet_loss

    return lambda y, w, pred: hinge_all_triplet_loss(pred, y[:, 0], train.margin)


def _matl_hinge(train: TrainParams) -> LossFn:
    from tgmatl.training.losses import matl_hinge_all

    return lambda y, w, pred: matl_hinge_all(pred, y[:, 0], y[:, 1], train.margin,
                                             train.box_weight)


def _cmatl_criterion(train: TrainParams) -> LossFn:
    """``(1 - λ)·hinge_all(class) + λ·L_geo``: the log-ratio term has no satisfied/violated
    split, so its plain mean over all validation triplets is already the right criterion."""
    from tgmatl.training.losses import hinge_all_triplet_loss, log_ratio_loss

    lam = train.box_weight
    return lambda y, w, pred: ((1.0 - lam) * hinge_all_triplet_loss(pred, y[:, 0], train.margin)
                               + lam * log_ratio_loss(pred, y[:, 2:]))


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
    Setup("cltl", False, _paper_loss("cltl"), _class_hinge),
    Setup("cltl_hard", False, _paper_loss("cltl_hard"), _class_hinge),
    Setup("matl", False, _paper_loss("matl"), _matl_hinge),
    Setup("tg_matl", True, _paper_loss("tg_matl"), _matl_hinge),
    Setup("matl_tuned", False, _paper_loss("matl"), _matl_hinge, variants=_lambda_grid),
    Setup("matl_uw", False, _matl_tasks, _matl_hinge, combiner=_uncertainty),
    Setup("matl_gradnorm", False, _matl_tasks, _matl_hinge, combiner=_gradnorm),
    Setup("cmatl", False, _cmatl_loss, _cmatl_criterion),
)}
assert tuple(REGISTRY) == SETUPS, "config.SETUPS lists the registry in the report's order"
assert {n for n, s in REGISTRY.items() if s.uses_sampling} == set(SAMPLING_SETUPS)


def get_setup(name: str) -> Setup:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown setup {name!r}; known: {', '.join(REGISTRY)}") from None
