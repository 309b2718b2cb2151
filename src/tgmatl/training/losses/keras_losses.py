"""Thin ``keras.losses.Loss`` wrappers around the pure losses, for ``model.fit``.

Labels travel as ``y_true`` of shape (B, 3 + K), float columns
``[class_id, box_label, mask, feat_1 .. feat_K]`` (:data:`Y_COLUMNS`, then the K continuous box
features; K = 0 for the losses that do not use them, which ignore any extra columns);
``y_pred`` is the (B, D) embedding batch. Each loss is one value per batch
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
from tgmatl.training.losses.distances import l2_normalize
from tgmatl.training.losses.log_ratio import LOG_RATIO_EPS, cmatl_loss
from tgmatl.training.losses.triplet import Negatives, matl_loss, tg_matl_loss, triplet_loss

Y_COLUMNS: tuple[str, str, str] = ("class_id", "box_label", "mask")
SETUP_LOSSES: tuple[str, ...] = ("cltl", "cltl_hard", "matl", "tg_matl")


def pack_targets(class_ids, box_labels=None, mask=None, features=None):
    """NumPy (B, 3 + K) float32 ``y_true``: the three columns (missing ones: 0 / all selected),
    then the [B, K] continuous box ``features`` if given."""
    import numpy as np

    class_ids = np.asarray(class_ids)
    n = class_ids.shape[0]
    box = np.zeros(n) if box_labels is None else np.asarray(box_labels)
    m = np.ones(n) if mask is None else np.asarray(mask)
    cols = [np.stack([class_ids, box, m], axis=1)]
    if features is not None:
        feats = np.asarray(features, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[0] != n:
            raise ValueError(f"features: expected shape ({n}, K), got {feats.shape}")
        cols.append(feats)
    return np.concatenate(cols, axis=1).astype("float32")


def insert_mask(y: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """``y_true`` from ``y = [class_id, box_label, feat_1..feat_K]`` and a [B] mask (the compiled
    loop's per-sample weight): the mask goes in as the third column."""
    mask = tf.cast(tf.reshape(mask, [-1, 1]), y.dtype)
    return tf.concat([y[:, :2], mask, y[:, 2:]], axis=1)


def unpack_targets(y_true: tf.Tensor, min_features: int = 0):
    """``(class_ids, box_labels, mask, features)`` of a packed ``y_true`` ([B] x 3, [B, K]).

    ``min_features``: how many feature columns the caller needs (checked in the graph).
    """
    cols = tf.reshape(y_true, [tf.shape(y_true)[0], -1])
    need = 3 + min_features
    what = "class_id, box_label, mask" + (f" and {min_features}+ features" if min_features else "")
    tf.debugging.assert_greater_equal(
        tf.shape(cols)[1], need, message=f"y_true needs at least {need} columns: {what}"
    )
    return cols[:, 0], cols[:, 1], cols[:, 2], cols[:, 3:]


def _columns(y_true: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    class_ids, box_labels, mask, _ = unpack_targets(y_true)
    return class_ids, box_labels, mask


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


@keras.saving.register_keras_serializable(package="tgmatl")
class CMATLLoss(_BatchLoss):
    """``L_CMATL = (1 - λ)·L_cls + λ·L_geo``: batch-all class triplets and the log-ratio loss on
    the continuous box features (``y_true`` columns 4..), ``λ = box_weight``.

    The mask column is not used (no task-guided variant of the log-ratio term is defined).
    """

    def __init__(
        self,
        margin: float,
        box_weight: float,
        eps: float = LOG_RATIO_EPS,
        squared: bool = True,
        normalize: bool = True,
        **kwargs,
    ):
        kwargs.setdefault("name", "cmatl")
        super().__init__(margin, normalize, **kwargs)
        if not 0.0 <= box_weight <= 1.0:
            raise ValueError(f"box_weight: {box_weight} must be in [0, 1]")
        if eps <= 0:
            raise ValueError(f"eps: {eps} must be > 0")
        self.box_weight = float(box_weight)
        self.eps = float(eps)
        self.squared = bool(squared)

    def call(self, y_true, y_pred):
        class_ids, _, _, feats = unpack_targets(y_true, min_features=1)
        return cmatl_loss(
            self._emb(y_pred), class_ids, feats, self.margin, self.box_weight, self.eps,
            self.squared,
        )

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "box_weight": self.box_weight,
            "eps": self.eps,
            "squared": self.squared,
        }


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
