"""The setups of Table II as a registry: what each trains its projection with.

A setup is one :class:`Setup` entry: its label, whether it is the paper's, whether it reads
``sampling.*`` (then it runs in the ``train_tg`` stage, so a sampling sweep reruns it alone),
its training loss and the validation criterion that picks its best epoch. Adding a setup is a
loss module plus one entry here; the fold loop (:mod:`tgmatl.training.folds`) never branches on
a setup's name.

Losses here are ``fn(y, w, pred) -> scalar`` for :class:`~tgmatl.training.loop.CompiledFit`:
``y`` holds the columns :data:`TARGETS` (class id, discrete box label, then the normalised box
features), ``w`` the per-sample TG-MATL selection weight (1 for every other setup).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tgmatl.config import SamplingParams, TrainParams

LossFn = Callable[[Any, Any, Any], Any]
TARGETS = ("class_id", "box_label", "features...")


@dataclass(frozen=True)
class Setup:
    name: str
    label: str
    in_paper: bool
    uses_sampling: bool
    # (train params, sampling params or None) -> training loss; None: no projection (WTL)
    train_loss: Callable[[TrainParams, SamplingParams | None], LossFn] | None
    # train params -> the hinge over all valid validation triplets (train.val_criterion)
    criterion: Callable[[TrainParams], LossFn] | None

    @property
    def trains_projection(self) -> bool:
        return self.train_loss is not None

    def validation_loss(self, train: TrainParams, sampling: SamplingParams | None) -> LossFn:
        """What selects the best epoch: ``hinge_all`` (default) or ``loss`` (the setup's own
        loss on every validation triplet: TG-MATL's un-masked, since the few selected
        validation samples form no valid triplet)."""
        if self.train_loss is None or self.criterion is None:
            raise ValueError(f"setup {self.name!r} trains no projection")
        if train.val_criterion == "hinge_all":
            return self.criterion(train)
        return _keras(_unmasked(self, train))


def _keras(loss) -> LossFn:
    """A ``keras_losses`` wrapper (y_true columns class, box, mask) as ``fn(y, w, pred)``."""
    import tensorflow as tf

    def fn(y, w, pred):
        return loss(tf.concat([y[:, :2], w[:, None]], axis=1), pred)

    return fn


def _unmasked(setup: Setup, train: TrainParams):
    from tgmatl.losses import loss_for_setup

    return loss_for_setup("matl" if setup.name == "tg_matl" else setup.name, train, None)


def _paper_loss(name: str) -> Callable[[TrainParams, SamplingParams | None], LossFn]:
    def make(train: TrainParams, sampling: SamplingParams | None) -> LossFn:
        from tgmatl.losses import loss_for_setup

        return _keras(loss_for_setup(name, train, sampling))

    return make


def _class_hinge(train: TrainParams) -> LossFn:
    from tgmatl.losses import hinge_all_triplet_loss

    return lambda y, w, pred: hinge_all_triplet_loss(pred, y[:, 0], train.margin)


def _matl_hinge(train: TrainParams) -> LossFn:
    from tgmatl.losses import matl_hinge_all

    return lambda y, w, pred: matl_hinge_all(pred, y[:, 0], y[:, 1], train.margin,
                                             train.box_weight)


REGISTRY: dict[str, Setup] = {s.name: s for s in (
    Setup("wtl", "WTL", True, False, None, None),
    Setup("cltl", "CLTL", True, False, _paper_loss("cltl"), _class_hinge),
    Setup("cltl_hard", "CLTL (Hard)", True, False, _paper_loss("cltl_hard"), _class_hinge),
    Setup("matl", "MATL (0.5)", True, False, _paper_loss("matl"), _matl_hinge),
    Setup("tg_matl", "TG-MATL", True, True, _paper_loss("tg_matl"), _matl_hinge),
)}


def get_setup(name: str) -> Setup:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown setup {name!r}; known: {', '.join(REGISTRY)}") from None
