"""Miners: which (anchor, positive, negative) combinations of a batch are valid triplets.

Every miner returns boolean masks over batch indices. Two sample masks restrict them:

- ``anchor_mask`` [B]: samples allowed as anchor *and* positive (TG-MATL's selected samples,
  ``m_a = m_p = 1``, Eq. 14);
- ``negative_mask`` [B]: samples allowed as negative (all samples, or the selected ones for
  ``sampling.negatives: selected``).

``None`` means every sample is allowed. A triplet ``(a, p, n)`` is valid when ``a != p``,
``y_a == y_p``, ``y_n != y_a`` and the masks allow each role (METHOD.md Eq. 1).
"""

from __future__ import annotations

import tensorflow as tf


def as_bool_mask(mask: tf.Tensor | None, labels: tf.Tensor) -> tf.Tensor:
    """[B] bool from a bool or 0/1 mask; all True when ``mask`` is None."""
    if mask is None:
        return tf.ones_like(labels, dtype=tf.bool)
    mask = tf.convert_to_tensor(mask)
    if mask.dtype == tf.bool:
        return tf.reshape(mask, [-1])
    return tf.reshape(mask > tf.cast(0.5, mask.dtype), [-1])


def as_labels(labels: tf.Tensor) -> tf.Tensor:
    """[B] int32 labels (Keras hands y_true over as floats; ids are small exact integers)."""
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    if labels.dtype.is_floating:
        labels = tf.round(labels)
    return tf.cast(labels, tf.int32)


def anchor_positive_mask(labels: tf.Tensor, anchor_mask: tf.Tensor | None = None) -> tf.Tensor:
    """[B, B] bool: ``(a, p)`` with ``a != p``, same label, both allowed as anchor/positive."""
    labels = as_labels(labels)
    allowed = as_bool_mask(anchor_mask, labels)
    same = tf.equal(labels[:, None], labels[None, :])
    distinct = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    both = tf.logical_and(allowed[:, None], allowed[None, :])
    return same & distinct & both


def anchor_negative_mask(
    labels: tf.Tensor,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """[B, B] bool: ``(a, n)`` with different labels, ``a`` an allowed anchor, ``n`` allowed."""
    labels = as_labels(labels)
    anchors = as_bool_mask(anchor_mask, labels)
    negatives = as_bool_mask(negative_mask, labels)
    differ = tf.not_equal(labels[:, None], labels[None, :])
    return differ & anchors[:, None] & negatives[None, :]


def triplet_mask(
    labels: tf.Tensor,
    anchor_mask: tf.Tensor | None = None,
    negative_mask: tf.Tensor | None = None,
) -> tf.Tensor:
    """[B, B, B] bool, ``[a, p, n]`` True for every valid triplet (batch-all mining)."""
    ap = anchor_positive_mask(labels, anchor_mask)
    an = anchor_negative_mask(labels, anchor_mask, negative_mask)
    return ap[:, :, None] & an[:, None, :]


def hardest_positive(dist: tf.Tensor, ap_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per anchor the largest distance to a valid positive: ([B] distance, [B] has-positive).

    Anchors without a positive get 0 (and ``False``); distances are >= 0, so 0 never wins over a
    real positive.
    """
    has = tf.reduce_any(ap_mask, axis=1)
    hardest = tf.reduce_max(tf.where(ap_mask, dist, tf.zeros_like(dist)), axis=1)
    return hardest, has


def hardest_negative(dist: tf.Tensor, an_mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per anchor the smallest distance to a valid negative: ([B] distance, [B] has-negative).

    Invalid pairs are replaced by a value above every distance, so they never win; anchors
    without any negative get 0 (and ``False``).
    """
    has = tf.reduce_any(an_mask, axis=1)
    above = tf.stop_gradient(tf.reduce_max(dist)) + 1.0
    hardest = tf.reduce_min(tf.where(an_mask, dist, tf.fill(tf.shape(dist), above)), axis=1)
    return tf.where(has, hardest, tf.zeros_like(hardest)), has


def masked_pair_distances(
    dist: tf.Tensor, ap_mask: tf.Tensor, an_mask: tf.Tensor, margin: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """Batch-all mining without a [B, B, B] mask: ([B, B] d(a,p), [B, B] d(a,n)) where invalid
    pairs are pushed out of reach.

    An invalid ``(a, p)`` gets ``-big`` and an invalid ``(a, n)`` gets ``+big``, with
    ``big = max d + margin + 1``: then ``d(a,p) - d(a,n) + margin < 0`` for every triplet with an
    invalid pair, so ``ℓ = 0`` exactly, while valid triplets keep their value. The set of
    triplets with ``ℓ > 0`` is therefore the same as with :func:`triplet_mask`, in O(B²) mask
    memory; ``big`` is a constant for the gradient.
    """
    big = tf.stop_gradient(tf.reduce_max(dist)) + tf.cast(margin, dist.dtype) + 1.0
    ap_d = tf.where(ap_mask, dist, -big * tf.ones_like(dist))
    an_d = tf.where(an_mask, dist, big * tf.ones_like(dist))
    return ap_d, an_d
