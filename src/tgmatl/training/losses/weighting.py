"""Balancing the task losses ``L_t`` (``L_cls``, ``L_box``) of multi-task triplet learning.

Pure functions; :mod:`tgmatl.training.combiners` keeps their state inside the compiled loop.

**Homoscedastic uncertainty weighting** (Kendall, Gal & Cipolla, CVPR 2018), with learned
log-variances ``s_t = log σ_t²``::

    L = Σ_t exp(-s_t)·L_t + s_t

Kendall et al.'s regression form ``½ exp(-s)·L + ½ s`` is half of this (an overall factor Adam
ignores); their classification form ``exp(-s)·L + ½ s`` differs only by a constant factor in the
optimal weight. Our tasks are both triplet hinge losses, not likelihoods, so there is no reason
to treat them differently: the symmetric form has its optimum at ``s_t = log L_t``, where every
weighted term ``exp(-s_t)·L_t`` equals 1, i.e. the tasks are equalised in scale.

Hinge losses can be exactly 0 (a batch whose triplets all satisfy the margin). Then
``∂L/∂s_t = 1 - exp(-s_t)·L_t = 1`` for good: ``s_t`` would fall without bound and the task's
weight ``exp(-s_t)`` explode as soon as it returns. Nothing in the objective stops this, so the
log-variances are clipped to :data:`UW_LOG_VAR_BOUNDS` after every step (weights between
``e^-4 ≈ 0.018`` and ``e^4 ≈ 55``).

**GradNorm** (Chen et al., ICML 2018): task weights ``w_t`` (sum ``T``) are moved so that the
gradient norms ``G_t = ||∇_W (w_t L_t)|| = w_t ||∇_W L_t||`` on the last shared layer ``W``
approach ``G*_t = mean(G) · r_t^α``, where ``r_t = L̃_t / mean(L̃)`` and ``L̃_t = L_t / L_t(0)``:
tasks that have trained less (higher ``L̃``) get larger gradients. See :func:`gradnorm_update`.
"""

from __future__ import annotations

import tensorflow as tf

# Clip range of the log-variances s_t (see the module doc): weights exp(-s) in [e^-4, e^4].
UW_LOG_VAR_BOUNDS: tuple[float, float] = (-4.0, 4.0)
# GradNorm weights are kept at least this large before renormalising: a gradient step may push a
# weight below 0, which the renormalisation to sum T would not undo.
GRADNORM_MIN_WEIGHT = 1e-3


def uncertainty_weights(log_vars: tf.Tensor) -> tf.Tensor:
    """[T] effective weights ``exp(-s_t)`` on the task losses."""
    return tf.exp(-tf.convert_to_tensor(log_vars))


def uncertainty_weighted_loss(losses: tf.Tensor, log_vars: tf.Tensor) -> tf.Tensor:
    """``Σ_t exp(-s_t)·L_t + s_t`` for [T] task losses and [T] log-variances."""
    losses = tf.convert_to_tensor(losses)
    log_vars = tf.cast(log_vars, losses.dtype)
    return tf.reduce_sum(tf.exp(-log_vars) * losses + log_vars)


def gradnorm_update(
    weights: tf.Tensor,
    grad_norms: tf.Tensor,
    losses: tf.Tensor,
    initial_losses: tf.Tensor,
    alpha: float,
    lr: float,
    min_weight: float = GRADNORM_MIN_WEIGHT,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One GradNorm step: ``(new weights [T], L_grad)``.

    ``weights`` [T] the current ``w_t``; ``grad_norms`` [T] the norms ``||∇_W L_t||`` of the
    *unweighted* task losses on the shared layer ``W``, so ``G_t = w_t·grad_norms_t``; ``losses``
    [T] this step's ``L_t``; ``initial_losses`` [T] ``L_t(0)`` (a task whose ``L_t(0)`` is 0 gets
    ratio 0 instead of a division by zero).

    ``L_grad = Σ_t |G_t - G*_t|`` with the target ``G*`` held constant, so
    ``∂L_grad/∂w_t = sign(G_t - G*_t)·||∇_W L_t||``; one gradient-descent step of size ``lr``,
    weights floored at ``min_weight``, then rescaled to sum to ``T``.
    """
    w = tf.convert_to_tensor(weights)
    dtype = w.dtype
    norms = tf.cast(grad_norms, dtype)
    ratio = tf.math.divide_no_nan(tf.cast(losses, dtype), tf.cast(initial_losses, dtype))
    rate = tf.math.divide_no_nan(ratio, tf.reduce_mean(ratio))  # r_t
    g = w * norms
    target = tf.stop_gradient(tf.reduce_mean(g) * tf.pow(rate, tf.constant(alpha, dtype)))
    grad_loss = tf.reduce_sum(tf.abs(g - target))
    step = tf.sign(g - target) * norms
    new = tf.maximum(w - tf.constant(lr, dtype) * step, tf.constant(min_weight, dtype))
    n_tasks = tf.cast(tf.size(new), dtype)
    return new * (n_tasks / tf.reduce_sum(new)), grad_loss
