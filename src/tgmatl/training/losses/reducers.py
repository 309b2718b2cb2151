"""Reducers: how per-triplet or per-anchor loss values become one number.

Both return exactly 0.0 (never NaN) when nothing qualifies, so an empty batch contributes no
gradient instead of poisoning the step.
"""

from __future__ import annotations

import tensorflow as tf


def mean_over_positive(values: tf.Tensor, valid: tf.Tensor | None = None) -> tf.Tensor:
    """Mean of hinge values (``>= 0``) over the entries that are ``valid`` and strictly positive.

    Batch-all (METHOD.md Eq. 1): averaging only the triplets that still violate the margin keeps
    the loss from being diluted by the (many) easy triplets. ``valid=None``: every entry counts
    (invalid ones already hold 0), which saves a full-size mask.
    """
    if valid is None:
        total = tf.reduce_sum(values)
        count = tf.reduce_sum(tf.cast(values > 0.0, values.dtype))
    else:
        active = tf.logical_and(valid, values > 0.0)
        total = tf.reduce_sum(tf.where(active, values, tf.zeros_like(values)))
        count = tf.reduce_sum(tf.cast(active, values.dtype))
    return tf.math.divide_no_nan(total, count)


def mean_over_valid(values: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """Mean of ``values`` over the ``valid`` entries (batch-hard: anchors with a triplet)."""
    total = tf.reduce_sum(tf.where(valid, values, tf.zeros_like(values)))
    count = tf.reduce_sum(tf.cast(valid, values.dtype))
    return tf.math.divide_no_nan(total, count)
