"""Thin ``keras.losses.Loss`` wrappers around the pure losses, for ``model.fit``.

Labels travel as ``y_true`` of shape (B, 3), float columns ``[class_id, box_label, mask]``
(:data:`Y_COLUMNS`); ``y_pred`` is the (B, D) embedding batch. Each loss is one value per batch
(triplets couple the samples), so ``call`` returns a scalar, which Keras passes through unreduced.
Per-sample weights have no meaning for a batch-level loss and are rejected rather than silently
misapplied.

``normalize=True`` L2-normalises ``y_pred`` first, so the distance is the method's (unit sphere)
even for a head that forgot to normalise; for a head that does, it is a no-op.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tgmatl.config import SamplingParams, TrainParams
from tgmatl.losses.distances import l2_normalize
from tgmatl.losses.triplet import Negatives, matl_loss, tg_matl_loss, triplet_loss

Y_COLUMNS: tuple[str, str, str] = ("class_id", "box_label", "mask")
SETUP_LOSSES: tuple[str, ...] = ("cltl", "cltl_hard", "matl", "tg_matl")


def pack_targets(class_ids, box_labels=None, mask=None):
    """NumPy (B, 3) float32 ``y_true`` from the three columns (missing ones: 0 / all selected)."""
    import numpy as np

    class_ids = np.asarray(class_ids)
    n = class_ids.shape[0]
    box = np.zeros(n) if box_labels is None else np.asarray(box_labels)
    m = np.ones(n) if mask is None else np.asarray(mask)
    return np.stack([class_ids, box, m], axis=1).astype("float32")


def _columns(y_true: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    cols = tf.reshape(y_true, [tf.shape(y_true)[0], -1])
    tf.debugging.assert_equal(
        tf.shape(cols)[1], 3, message="y_true must have 3 columns: class_id, box_label, mask"
    )
    return cols[:, 0], cols[:, 1], cols[:, 2]


class _BatchLoss(keras.losses.Loss):
    """Shared plumbing: scalar per batch, no sample weights, optional L2 normalisation."""

    def __init__(self, margin: float, normalize: bool = True, **kwargs):
        super().__init__(**kwargs)
        if margin < 0:
            raise ValueError(f"margin: {margin} must be >= 0")
        self.margin = float(margin)
        self.normalize = bool(normalize)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{type(self).__name__} is a batch-level loss: no sample weights")
        return super().__call__(y_true, y_pred)

    def _emb(self, y_pred: tf.Tensor) -> tf.Tensor:
        return l2_normalize(y_pred) if self.normalize else y_pred

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin, "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="tgmatl")
class ClassTripletLoss(_BatchLoss):
    """``L_cls`` (CLTL): batch-all, or batch-hard with ``hard=True`` (CLTL (Hard))."""

    def __init__(self, margin: float, hard: bool = False, normalize: bool = True, **kwargs):
        kwargs.setdefault("name", "class_triplet_hard" if hard else "class_triplet")
        super().__init__(margin, normalize, **kwargs)
        self.hard = bool(hard)

    def call(self, y_true, y_pred):
        class_ids, _, _ = _columns(y_true)
        return triplet_loss(self._emb(y_pred), class_ids, self.margin, hard=self.hard)

    def get_config(self) -> dict:
        return {**super().get_config(), "hard": self.hard}


@keras.saving.register_keras_serializable(package="tgmatl")
class MATLLoss(_BatchLoss):
    """``L_MATL = (1 - λ)·L_cls + λ·L_box`` (batch-all), ``λ = box_weight``."""

    def __init__(self, margin: float, box_weight: float, normalize: bool = True, **kwargs):
        kwargs.setdefault("name", "matl")
        super().__init__(margin, normalize, **kwargs)
        if not 0.0 <= box_weight <= 1.0:
            raise ValueError(f"box_weight: {box_weight} must be in [0, 1]")
        self.box_weight = float(box_weight)

    def call(self, y_true, y_pred):
        class_ids, box_labels, _ = _columns(y_true)
        return matl_loss(self._emb(y_pred), class_ids, box_labels, self.margin, self.box_weight)

    def get_config(self) -> dict:
        return {**super().get_config(), "box_weight": self.box_weight}


@keras.saving.register_keras_serializable(package="tgmatl")
class TGMATLLoss(MATLLoss):
    """``L_TG``: ``L_MATL`` over triplets with selected anchor and positive (mask column).

    ``negatives``: ``all`` (METHOD default) or ``selected`` (authors' code). For validation pass a
    mask column of ones, so the loss covers all triplets.
    """

    def __init__(
        self,
        margin: float,
        box_weight: float,
        negatives: Negatives = "all",
        normalize: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("name", "tg_matl")
        super().__init__(margin, box_weight, normalize, **kwargs)
        if negatives not in ("all", "selected"):
            raise ValueError(f"negatives: {negatives!r} is not one of all|selected")
        self.negatives = negatives

    def call(self, y_true, y_pred):
        class_ids, box_labels, mask = _columns(y_true)
        return tg_matl_loss(
            self._emb(y_pred),
            class_ids,
            box_labels,
            mask,
            self.margin,
            self.box_weight,
            negatives=self.negatives,
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "negatives": self.negatives}


def loss_for_setup(
    setup: str, train: TrainParams, sampling: SamplingParams | None = None
) -> keras.losses.Loss:
    """The projection loss of a setup (METHOD.md Table II); WTL trains no projection."""
    if setup == "cltl":
        return ClassTripletLoss(train.margin, hard=False)
    if setup == "cltl_hard":
        return ClassTripletLoss(train.margin, hard=True)
    if setup == "matl":
        return MATLLoss(train.margin, train.box_weight)
    if setup == "tg_matl":
        if sampling is None:
            raise ValueError("setup 'tg_matl' needs the sampling params (sampling.negatives)")
        return TGMATLLoss(train.margin, train.box_weight, sampling.negatives)
    if setup == "wtl":
        raise ValueError("setup 'wtl' trains no projection, so it has no triplet loss")
    raise ValueError(f"setup {setup!r} is not one of {'|'.join(SETUP_LOSSES)}")
