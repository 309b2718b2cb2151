"""How :class:`~tgmatl.training.loop.CompiledFit` turns a vector of task losses into one objective.

A multi-task loss function returns the [T] task losses of a batch (e.g. ``(L_cls, L_box)`` from
:func:`tgmatl.training.losses.matl_task_losses`); a combiner owns the task weights and their state:

- :class:`FixedWeights`: ``Σ w_t L_t`` with constant weights (MATL: ``(1 - λ, λ)``);
- :class:`UncertaintyWeighting`: ``Σ exp(-s_t) L_t + s_t`` with log-variances ``s_t`` trained by
  the loop's Adam alongside the model, clipped after every step;
- :class:`GradNorm`: ``Σ w_t L_t`` with ``w`` moved after every step from the task gradient norms
  on the projection's last Dense kernel.

The formulas and the reasons for their forms are in :mod:`tgmatl.training.losses.weighting`.
Variables are
created by :meth:`build` (called by ``CompiledFit``), reset at the start of every ``fit`` and
snapshotted / restored with the model's weights, so the reported weights belong to the restored
(best) epoch. ``eval_weights`` turn the task losses into the validation number when the loop is
given no ``val_loss`` (pass MATL's ``(1 - λ, λ)`` so that every combiner early-stops on the same
criterion).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tgmatl.training.losses.weighting import (
    UW_LOG_VAR_BOUNDS,
    gradnorm_update,
    uncertainty_weighted_loss,
    uncertainty_weights,
)

COMBINERS: tuple[str, ...] = ("fixed", "uncertainty", "gradnorm")


def _weights(values: Sequence[float], what: str, n_tasks: int | None = None) -> np.ndarray:
    w = np.asarray(values, np.float64).ravel()
    if w.size < 1 or (n_tasks is not None and w.size != n_tasks):
        raise ValueError(f"{what}: expected {n_tasks or 'at least 1'} values, got {w.size}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{what}: {w.tolist()} must be finite and >= 0")
    return w


class Combiner:
    """Base: no extra variables, nothing to do after a step."""

    kind = "base"
    needs_kernel_norms = False  # GradNorm: the loop passes ||∇_W L_t|| to update()

    def __init__(self, n_tasks: int, eval_weights: Sequence[float] | None = None,
                 lr: float | None = None):
        if n_tasks < 1:
            raise ValueError(f"n_tasks: {n_tasks} must be >= 1")
        self.n_tasks = int(n_tasks)
        ev = np.ones(n_tasks) if eval_weights is None else eval_weights
        self.eval_weights = _weights(ev, "eval_weights", n_tasks)
        if lr is not None and not lr > 0:
            raise ValueError(f"lr: {lr} must be > 0")
        self.lr = lr  # Adam learning rate of `trainable` (None: the model's)
        self.trainable: list[Any] = []  # variables Adam updates with the model
        self.state: list[Any] = []  # variables snapshotted / restored with the best epoch

    def build(self, model) -> None:
        """Create the variables (once, outside the graph). One combiner serves one model."""
        owner = getattr(self, "_model", None)
        if owner is not None and owner is not model:
            raise ValueError(f"{self.kind} combiner: already built for model {owner.name}; "
                             f"make one combiner per CompiledFit")
        self._model = model

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Graph: back to the initial state at the start of a fit."""

    def objective(self, losses):
        raise NotImplementedError

    def weights(self):
        """Graph: [T] effective weights on the task losses."""
        raise NotImplementedError

    def after_step(self, losses, kernel_norms=None) -> None:  # noqa: B027 - optional hook
        """Graph: after Adam's update (``kernel_norms`` only when ``needs_kernel_norms``)."""

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "eval_weights": self.eval_weights.tolist()}


class FixedWeights(Combiner):
    """``Σ_t w_t L_t`` with constant weights."""

    kind = "fixed"

    def __init__(self, weights: Sequence[float], eval_weights: Sequence[float] | None = None):
        w = _weights(weights, "weights")
        super().__init__(w.size, w if eval_weights is None else eval_weights)
        self.fixed = w

    def objective(self, losses):
        import tensorflow as tf

        return tf.reduce_sum(self.weights() * losses)

    def weights(self):
        import tensorflow as tf

        return tf.constant(self.fixed, tf.float32)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "weights": self.fixed.tolist()}


class UncertaintyWeighting(Combiner):
    """``Σ_t exp(-s_t) L_t + s_t``; ``s`` starts at ``initial`` (0: weights 1) and is clipped to
    ``bounds`` after every Adam step. ``lr``: Adam's step size for ``s`` (None: the model's)."""

    kind = "uncertainty"

    def __init__(self, n_tasks: int, eval_weights: Sequence[float] | None = None,
                 lr: float | None = None, bounds: tuple[float, float] = UW_LOG_VAR_BOUNDS,
                 initial: float = 0.0):
        super().__init__(n_tasks, eval_weights, lr)
        lo, hi = bounds
        if not lo <= initial <= hi:
            raise ValueError(f"bounds: initial log-variance {initial} outside [{lo}, {hi}]")
        self.bounds = (float(lo), float(hi))
        self.initial = float(initial)
        self.log_vars = None

    def build(self, model) -> None:
        import tensorflow as tf

        super().build(model)
        if self.log_vars is None:
            # trainable: the loop's GradientTape watches it (Keras does not track it)
            self.log_vars = tf.Variable(tf.fill([self.n_tasks], self.initial), trainable=True,
                                        name="uw_log_vars")
        self.trainable = [self.log_vars]
        self.state = [self.log_vars]

    def reset(self) -> None:
        import tensorflow as tf

        self.log_vars.assign(tf.fill([self.n_tasks], self.initial))

    def objective(self, losses):
        return uncertainty_weighted_loss(losses, self.log_vars)

    def weights(self):
        return uncertainty_weights(self.log_vars)

    def after_step(self, losses, kernel_norms=None) -> None:
        import tensorflow as tf

        self.log_vars.assign(tf.clip_by_value(self.log_vars, *self.bounds))

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "bounds": list(self.bounds), "initial": self.initial,
                "lr": self.lr}


class GradNorm(Combiner):
    """GradNorm weights ``w`` (sum ``T``), updated after every step by
    :func:`~tgmatl.training.losses.weighting.gradnorm_update` with the norms of the task gradients
    on
    the kernel of ``layer`` (default: the model's last ``Dense`` layer). ``L_t(0)`` is the first
    step's loss of the fit (for a task at 0 then: its first positive loss)."""

    kind = "gradnorm"
    needs_kernel_norms = True

    def __init__(self, n_tasks: int, alpha: float, lr: float,
                 eval_weights: Sequence[float] | None = None,
                 initial: Sequence[float] | None = None, layer: str | None = None):
        super().__init__(n_tasks, eval_weights)
        if not (alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"alpha: {alpha} must be > 0")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr: {lr} must be > 0")
        self.alpha, self.step_size = float(alpha), float(lr)
        w0 = _weights(np.ones(n_tasks) if initial is None else initial, "initial", n_tasks)
        if w0.sum() <= 0:
            raise ValueError(f"initial: {w0.tolist()} sums to 0")
        self.initial = w0 * (n_tasks / w0.sum())
        self.layer = layer
        self.w = self.l0 = self.kernel = None

    def build(self, model) -> None:
        import keras
        import tensorflow as tf

        super().build(model)
        if self.layer is None:
            dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
            if not dense:
                raise ValueError(f"{model.name}: GradNorm needs a Dense layer, the model has none")
            layer = dense[-1]
        else:
            layer = model.get_layer(self.layer)
        self.kernel = layer.kernel.value
        if self.w is None:
            self.w = tf.Variable(tf.constant(self.initial, tf.float32), trainable=False,
                                 name="gradnorm_weights")
            self.l0 = tf.Variable(tf.zeros([self.n_tasks]), trainable=False,
                                  name="gradnorm_initial_losses")
        self.state = [self.w]

    def reset(self) -> None:
        import tensorflow as tf

        self.w.assign(tf.constant(self.initial, tf.float32))
        self.l0.assign(tf.zeros([self.n_tasks]))

    def objective(self, losses):
        import tensorflow as tf

        return tf.reduce_sum(tf.stop_gradient(self.w) * losses)

    def weights(self):
        return self.w.read_value()

    def after_step(self, losses, kernel_norms=None) -> None:
        import tensorflow as tf

        # L_t(0): the first step's loss, or a task's first positive one (a hinge may start at 0)
        self.l0.assign(tf.where(self.l0 > 0.0, self.l0, losses))
        new, _ = gradnorm_update(self.w, kernel_norms, losses, self.l0, self.alpha,
                                 self.step_size)
        self.w.assign(new)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "alpha": self.alpha, "lr": self.step_size,
                "initial": self.initial.tolist()}


def combiner_for(kind: str, box_weight: float, train=None, uw_lr: float | None = None
                 ) -> Combiner:
    """The two-task ``(L_cls, L_box)`` combiner of a MATL-like setup.

    ``fixed``: ``(1 - λ, λ)``; ``uncertainty`` and ``gradnorm`` start from equal weights and
    validate with ``(1 - λ, λ)`` like MATL (``λ = box_weight``). ``gradnorm`` needs ``train``
    (``train.gradnorm_alpha``, ``train.gradnorm_lr``).
    """
    lam = (1.0 - box_weight, box_weight)
    if kind == "fixed":
        return FixedWeights(lam)
    if kind == "uncertainty":
        return UncertaintyWeighting(2, eval_weights=lam, lr=uw_lr)
    if kind == "gradnorm":
        if train is None:
            raise ValueError("combiner 'gradnorm' needs the train params (train.gradnorm_*)")
        return GradNorm(2, train.gradnorm_alpha, train.gradnorm_lr, eval_weights=lam)
    raise ValueError(f"combiner {kind!r} is not one of {'|'.join(COMBINERS)}")
