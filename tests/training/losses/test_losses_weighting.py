"""Uncertainty weighting and GradNorm's update on cases small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tgmatl.training.losses import gradnorm_update, uncertainty_weighted_loss, uncertainty_weights


# --- homoscedastic uncertainty weighting ---------------------------------------------------------
def test_uncertainty_value_and_weights_by_hand():
    """L = (0.5, 2), s = (0, log 2): exp(-s) = (1, 1/2);
    Σ exp(-s)L + s = 0.5 + 0 + 1 + log 2 = 1.5 + log 2."""
    s = np.array([0.0, np.log(2.0)])
    got = float(uncertainty_weighted_loss(np.array([0.5, 2.0]), s))
    assert got == pytest.approx(1.5 + np.log(2.0), rel=1e-12)
    np.testing.assert_allclose(np.asarray(uncertainty_weights(s)), [1.0, 0.5], rtol=1e-12)


def test_uncertainty_gradient_and_optimum():
    """∂/∂s_t = 1 - exp(-s_t) L_t: (1 - 0.5, 1 - 2) = (0.5, -1) at s = 0, and 0 at s = log L,
    where every weighted term exp(-s)L is 1. A hinge at 0 gives 1 for ever: s falls without
    bound unless clipped (the combiner clips)."""
    losses = tf.constant([0.5, 2.0, 0.0], tf.float64)
    for s0, want in ((np.zeros(3), [0.5, -1.0, 1.0]),
                     (np.log([0.5, 2.0, 1.0]), [0.0, 0.0, 1.0])):
        s = tf.Variable(s0)
        with tf.GradientTape() as tape:
            value = uncertainty_weighted_loss(losses, s)
        np.testing.assert_allclose(np.asarray(tape.gradient(value, s)), want, atol=1e-12)


# --- GradNorm ---------------------------------------------------------------------------------
def _update(w, norms, losses, l0, alpha, lr, **kw):
    new, lg = gradnorm_update(np.asarray(w, np.float64), np.asarray(norms, np.float64),
                              np.asarray(losses, np.float64), np.asarray(l0, np.float64),
                              alpha, lr, **kw)
    return np.asarray(new), float(lg)


def test_gradnorm_update_by_hand():
    """w = (1, 1), ||∇_W L_t|| = (2, 1), L = (0.5, 0.9), L(0) = (1, 1), α = 1, lr = 0.1.
    G = w·n = (2, 1), mean(G) = 1.5.  L̃ = (0.5, 0.9), mean 0.7, r = (5/7, 9/7).
    G* = 1.5·r = (15/14, 27/14);  G - G* = (13/14, -13/14);  L_grad = 13/7.
    ∂L_grad/∂w = sign(G - G*)·n = (2, -1);  w - 0.1·(2, -1) = (0.8, 1.1), sum 1.9;
    renormalised to sum 2: (1.6/1.9, 2.2/1.9) = (16/19, 22/19).
    Task 1 has the larger gradient and has trained more (smaller L̃): its weight drops."""
    new, lg = _update([1, 1], [2, 1], [0.5, 0.9], [1, 1], alpha=1.0, lr=0.1)
    np.testing.assert_allclose(new, [16 / 19, 22 / 19], rtol=1e-12)
    assert lg == pytest.approx(13 / 7, rel=1e-12)
    assert new.sum() == pytest.approx(2.0, rel=1e-12)


def test_gradnorm_alpha_sets_the_direction():
    """w = (0.5, 1.5), n = (1, 1), L = (0.2, 0.2), L(0) = (0.4, 0.1): L̃ = (0.5, 2), mean 1.25,
    r = (0.4, 1.6); G = (0.5, 1.5), mean(G) = 1.
    α = 1.5: G* = (0.4^1.5, 1.6^1.5) = (0.2530, 2.0239); G - G* = (+0.247, -0.524): the lagging
      task 2 is pulled up, w - 0.2·(1, -1) = (0.3, 1.7) (sum already 2);
      L_grad = (0.5 - 0.4^1.5) + (1.6^1.5 - 1.5).
    α → 0 (1e-9): G* = mean(G) = 1 for both, G - G* = (-0.5, +0.5): the norms are equalised
      instead, w + 0.2·(1, -1) = (0.7, 1.3); L_grad = 1."""
    new, lg = _update([0.5, 1.5], [1, 1], [0.2, 0.2], [0.4, 0.1], alpha=1.5, lr=0.2)
    np.testing.assert_allclose(new, [0.3, 1.7], rtol=1e-12)
    assert lg == pytest.approx((0.5 - 0.4**1.5) + (1.6**1.5 - 1.5), rel=1e-12)
    new, lg = _update([0.5, 1.5], [1, 1], [0.2, 0.2], [0.4, 0.1], alpha=1e-9, lr=0.2)
    np.testing.assert_allclose(new, [0.7, 1.3], rtol=1e-8)
    assert lg == pytest.approx(1.0, rel=1e-8)


def test_gradnorm_floor_and_renormalisation():
    """w = (0.05, 1.95), n = (1, 10), L = L(0): r = (1, 1), G = (0.05, 19.5), G* = 9.775:
    step (-1, +10); with lr 0.5: (0.55, 1.95 - 5 < 0) → floored at 1e-3 → (0.55, 0.001),
    ×2/0.551."""
    new, _ = _update([0.05, 1.95], [1, 10], [1, 1], [1, 1], alpha=1.5, lr=0.5)
    np.testing.assert_allclose(new, np.array([0.55, 0.001]) * 2 / 0.551, rtol=1e-12)
    assert (new > 0).all() and new.sum() == pytest.approx(2.0)


def test_gradnorm_zero_initial_loss_and_three_tasks():
    """L(0) = 0 for task 1 (a hinge that started satisfied): its ratio counts as 0, not inf.
    T = 3: w = 1, n = (1, 1, 1), L̃ = (0, 1, 2), mean 1, r = (0, 1, 2), α = 1:
    G* = (0, 1, 2), G - G* = (1, 0, -1), step (1, 0, -1), lr 0.3: (0.7, 1, 1.3), sum 3."""
    new, lg = _update([1, 1, 1], [1, 1, 1], [0.5, 1.0, 2.0], [0.0, 1.0, 1.0], alpha=1.0, lr=0.3)
    np.testing.assert_allclose(new, [0.7, 1.0, 1.3], rtol=1e-12)
    assert lg == pytest.approx(2.0)
