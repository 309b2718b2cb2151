"""The triplet losses of METHOD.md Eqs. 1-4 and 14 as pure TensorFlow functions.

``emb`` is the [B, D] batch of embeddings *as given*: the projection head L2-normalises its output
(the Keras wrappers in :mod:`tgmatl.training.losses.keras_losses` normalise again, which is
idempotent), and
``d`` is the Euclidean distance between them. ``labels`` are [B] integer ids (class ids for
``L_cls``, discrete box labels for ``L_box``); masks are [B] bool or 0/1. Every function returns a
float scalar and 0.0 when the batch holds no valid triplet.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf

from tgmatl.training.losses.distances import pairwise_distances
from tgmatl.training.losses.miners import (
    anchor_negative_mask,
    anchor_positive_mask,
    as_bool_mask,
    as_labels,
    hardest_negative,
    hardest_positive,
    masked_pair_distances,
    triplet_mask,
)
from tgmatl.training.losses.reducers import mean_over_positive, mean_over_valid

Negatives = Literal["all", "selected"]


def triplet_values(dist: tf.Tensor, margin: float) -> tf.Tensor:
    """[B, B, B] ``max(0, d(a,p) - d(a,n) + margin)`` for every index combination."""
    margin = tf.cast(margin, dist.dtype)
    return tf.nn.relu(dist[:, :, None] - dist[:, None, :] + margin)


def hinge_sum(dist: tf.Tensor, ap_mask: tf.Tensor, an_mask: tf.Tensor,
              margin: float) -> tuple[tf.Tensor, tf.Tensor]:
    """``(Σ ℓ(a,p,n), #{ℓ > 0})`` over the valid triplets, in O(B² log B) instead of a
    [B, B, B] cube.

    With ``c(a,p) = d(a,p) + margin``, ``ℓ > 0`` exactly when ``d(a,n) < c(a,p)``, so

        Σ ℓ = Σ_(a,p) k(a,p)·c(a,p) − Σ_(a,n) q(a,n)·d(a,n),
        k(a,p) = #{n : d(a,n) < c(a,p)},   q(a,n) = #{p : c(a,p) > d(a,n)},

    both counts found by binary search in each anchor's sorted row. The counts are piecewise
    constant (no gradient), so the gradient is the cube's: ``k`` for ``d(a,p)``, ``-q`` for
    ``d(a,n)`` (relu' = 0 at a tie, as here). Invalid pairs are pushed out of reach
    (:func:`~tgmatl.training.losses.miners.masked_pair_distances`) and so count 0 times.
    Only the summation order differs from the cube (float32 round-off; ``tests/training/
    losses`` compare both)."""
    ap_d, an_d = masked_pair_distances(dist, ap_mask, an_mask, margin)
    c = ap_d + tf.cast(margin, dist.dtype)
    c_fixed, an_fixed = tf.stop_gradient(c), tf.stop_gradient(an_d)
    b = tf.shape(dist)[-1]
    k = tf.searchsorted(tf.sort(an_fixed, axis=-1), c_fixed, side="left")
    q = b - tf.searchsorted(tf.sort(c_fixed, axis=-1), an_fixed, side="right")
    k, q = tf.cast(k, dist.dtype), tf.cast(q, dist.dtype)
    return tf.reduce_sum(k * c) - tf.reduce_sum(q * an_d), tf.reduce_sum(k)


def batch_all_triplet_loss(
    emb: tf.Tensor,
    labels: tf.Tensor,
    margin: float,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """Batch-all: mean of ``ℓ(a,p,n)`` over the valid triplets with ``ℓ > 0`` (0 if none).

    Sums and counts by :func:`hinge_sum` (O(B² log B)): same value as
    :func:`batch_all_triplet_loss_explicit` up to float round-off, no [B, B, B] tensor (see
    ``benchmarks/bench_losses.py``).
    """
    dist = pairwise_distances(emb)
    ap = anchor_positive_mask(labels, anchor_mask)
    an = anchor_negative_mask(labels, anchor_mask, negative_mask)
    total, count = hinge_sum(dist, ap, an, margin)
    return tf.math.divide_no_nan(total, count)


def batch_all_triplet_loss_explicit(
    emb: tf.Tensor,
    labels: tf.Tensor,
    margin: float,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """Batch-all written literally: a [B, B, B] triplet mask and all ``ℓ`` values.

    The reference for :func:`batch_all_triplet_loss` (tests, benchmark); more memory.
    """
    dist = pairwise_distances(emb)
    valid = triplet_mask(labels, anchor_mask, negative_mask)
    return mean_over_positive(triplet_values(dist, margin), valid)


def hinge_all_triplet_loss(emb: tf.Tensor, labels: tf.Tensor, margin: float,
                           valid: tf.Tensor | None = None) -> tf.Tensor:
    """Mean of ``ℓ(a,p,n)`` over *every* valid triplet, satisfied ones included (0 if none).
    ``valid`` [B] (None: all) restricts every role to those samples (padding of a batched run).

    The validation criterion ``train.val_criterion: hinge_all``: unlike batch-all's mean over
    the violating triplets only, it falls whenever a violation shrinks or disappears, so the
    epoch it picks is one whose embedding is better, not one with fewer, larger violations.
    """
    dist = pairwise_distances(emb)
    ap = anchor_positive_mask(labels, valid)
    an = anchor_negative_mask(labels, valid, valid)
    total, _ = hinge_sum(dist, ap, an, margin)
    # valid triplets: per anchor, its valid positives times its valid negatives
    n_valid = tf.reduce_sum(tf.reduce_sum(tf.cast(ap, dist.dtype), axis=1)
                            * tf.reduce_sum(tf.cast(an, dist.dtype), axis=1))
    return tf.math.divide_no_nan(total, n_valid)


def hinge_all_triplet_loss_explicit(emb: tf.Tensor, labels: tf.Tensor, margin: float,
                                    valid: tf.Tensor | None = None) -> tf.Tensor:
    """:func:`hinge_all_triplet_loss` written literally over the [B, B, B] cube (the
    reference for tests)."""
    dist = pairwise_distances(emb)
    return mean_over_valid(triplet_values(dist, margin), triplet_mask(labels, valid, valid))


def matl_hinge_all(emb: tf.Tensor, class_labels: tf.Tensor, box_labels: tf.Tensor,
                   margin: float, box_weight: float) -> tf.Tensor:
    """``(1 - λ)·hinge_all(class) + λ·hinge_all(box)``: the criterion of the MATL family."""
    lam = tf.cast(box_weight, tf.convert_to_tensor(emb).dtype)
    return ((1.0 - lam) * hinge_all_triplet_loss(emb, class_labels, margin)
            + lam * hinge_all_triplet_loss(emb, box_labels, margin))


def batch_hard_triplet_loss(
    emb: tf.Tensor,
    labels: tf.Tensor,
    margin: float,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """Batch-hard: per anchor ``max(0, max_p d(a,p) - min_n d(a,n) + margin)``.

    Averaged over the anchors that have at least one valid positive and one valid negative
    (anchors whose hardest triplet is already satisfied count with 0). O(B²) memory.
    """
    dist = pairwise_distances(emb)
    pos, has_pos = hardest_positive(dist, anchor_positive_mask(labels, anchor_mask))
    neg, has_neg = hardest_negative(dist, anchor_negative_mask(labels, anchor_mask, negative_mask))
    values = tf.nn.relu(pos - neg + tf.cast(margin, dist.dtype))
    return mean_over_valid(values, tf.logical_and(has_pos, has_neg))


def triplet_loss(
    emb: tf.Tensor,
    labels: tf.Tensor,
    margin: float,
    hard: bool = False,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """Batch-hard when ``hard`` else batch-all."""
    fn = batch_hard_triplet_loss if hard else batch_all_triplet_loss
    return fn(emb, labels, margin, anchor_mask=anchor_mask, negative_mask=negative_mask)


def class_loss(
    emb: tf.Tensor, class_labels: tf.Tensor, margin: float, hard: bool = False
) -> tf.Tensor:
    """``L_cls`` (Eq. 2): triplets defined by the class labels."""
    return triplet_loss(emb, class_labels, margin, hard=hard)


def box_loss(emb: tf.Tensor, box_labels: tf.Tensor, margin: float, hard: bool = False) -> tf.Tensor:
    """``L_box`` (Eq. 3): triplets defined by the discrete box labels ``z``."""
    return triplet_loss(emb, box_labels, margin, hard=hard)


def matl_task_losses(
    emb: tf.Tensor,
    class_labels: tf.Tensor,
    box_labels: tf.Tensor,
    margin: float,
    hard: bool = False,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """[2] task losses ``(L_cls, L_box)`` of MATL, for a multi-task combiner (the masks as in
    :func:`matl_loss`)."""
    kw = {"hard": hard, "anchor_mask": anchor_mask, "negative_mask": negative_mask}
    l_cls = triplet_loss(emb, class_labels, margin, **kw)
    l_box = triplet_loss(emb, box_labels, margin, **kw)
    return tf.stack([l_cls, l_box])


def matl_loss(
    emb: tf.Tensor,
    class_labels: tf.Tensor,
    box_labels: tf.Tensor,
    margin: float,
    box_weight: float,
    hard: bool = False,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """``L_MATL = (1 - λ)·L_cls + λ·L_box`` (Eq. 4), ``λ = box_weight``.

    The masks (used by :func:`tg_matl_loss`) restrict both terms alike.
    """
    lam = tf.cast(box_weight, tf.convert_to_tensor(emb).dtype)
    l_cls, l_box = tf.unstack(matl_task_losses(emb, class_labels, box_labels, margin, hard=hard,
                                               anchor_mask=anchor_mask,
                                               negative_mask=negative_mask))
    return (1.0 - lam) * l_cls + lam * l_box


def tg_matl_loss(
    emb: tf.Tensor,
    class_labels: tf.Tensor,
    box_labels: tf.Tensor,
    mask: tf.Tensor,
    margin: float,
    box_weight: float,
    negatives: Negatives = "all",
) -> tf.Tensor:
    """``L_TG`` (Eq. 14): ``L_MATL`` over the triplets whose anchor and positive are selected.

    ``mask`` is the selection ``m`` (Eqs. 6-13). Negatives come from every sample of the batch
    (``negatives="all"``, the METHOD default) or only from selected ones (``"selected"``: then
    every role is restricted to selected samples, which is exactly the authors' code's dropping
    of unselected samples from the batch). Validation should pass an all-ones mask: the loss
    over all triplets (METHOD.md pitfalls).
    """
    labels, selected, neg_mask = _tg_masks(class_labels, mask, negatives)
    return matl_loss(
        emb,
        labels,
        box_labels,
        margin,
        box_weight,
        anchor_mask=selected,
        negative_mask=neg_mask,
    )


def tg_matl_task_losses(
    emb: tf.Tensor,
    class_labels: tf.Tensor,
    box_labels: tf.Tensor,
    mask: tf.Tensor,
    margin: float,
    negatives: Negatives = "all",
) -> tf.Tensor:
    """[2] task losses ``(L_cls, L_box)`` of TG-MATL (selection as in :func:`tg_matl_loss`)."""
    labels, selected, neg_mask = _tg_masks(class_labels, mask, negatives)
    return matl_task_losses(
        emb, labels, box_labels, margin, anchor_mask=selected, negative_mask=neg_mask
    )


def _tg_masks(
    class_labels: tf.Tensor, mask: tf.Tensor, negatives: Negatives
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """(labels, anchor/positive mask, negative mask) of TG-MATL's selection."""
    if negatives not in ("all", "selected"):
        raise ValueError(f"negatives: {negatives!r} is not one of all|selected")
    labels = as_labels(class_labels)
    selected = as_bool_mask(mask, labels)
    return labels, selected, (selected if negatives == "selected" else None)
