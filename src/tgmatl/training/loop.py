"""The compiled training loop: a whole run (epochs, steps, validation, early stopping, best-weight
restore) as one ``tf.function`` call.

Why: the data are tiny (tens of training samples a fold), so Keras ``fit`` spends nearly all its
time in per-epoch Python overhead (callbacks, data adapters, validation iterators, checkpoint
files). Here the batch plan is a tensor, Adam is written out, and the stopping rule is a
``tf.while_loop`` condition; a model built once and re-initialised per fold keeps one trace for
every fold (``autograph=False``: the graph code uses explicit loops, which traces ~3x faster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgmatl.training.schedule import VAL_CHUNK, stratified_order, val_bounds

# Adam's constants, as keras.optimizers.Adam's defaults.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7

LossFn = Callable[[Any, Any, Any], Any]  # (y_true [b, K], weight [b], y_pred) -> scalar


@dataclass(frozen=True)
class FitResult:
    epochs: int                 # epochs run (early stopping may end before the ceiling)
    best_epoch: int             # 1-based epoch whose weights were restored
    best_val_loss: float
    train_loss: np.ndarray      # per epoch: mean over the epoch's steps
    val_loss: np.ndarray        # per epoch


class CompiledFit:
    """Train one Keras model with Adam, early stopping and best-weight restore in one graph.

    ``loss(y_true, weight, y_pred)`` is the training loss of a batch; ``val_loss`` (default: the
    same) is evaluated once per epoch on the whole validation set (in :func:`val_bounds` chunks).
    Adam is written out (same update and defaults as ``keras.optimizers.Adam``) so that the whole
    run - every epoch, step and the stopping rule - lives inside one ``tf.while_loop``.
    """

    def __init__(self, model, loss: LossFn, lr: float, val_loss: LossFn | None = None,
                 y_dim: int = 1):
        import tensorflow as tf

        self.model = model
        self.loss = loss
        self.val_loss = val_loss or loss
        self.lr = float(lr)
        self.vars = [v.value for v in model.trainable_variables]
        zeros = [tf.zeros(v.shape, v.dtype) for v in self.vars]
        self.m = [tf.Variable(z, trainable=False) for z in zeros]
        self.v = [tf.Variable(z, trainable=False) for z in zeros]
        self.best = [tf.Variable(z, trainable=False) for z in zeros]
        self.t = tf.Variable(0.0, trainable=False)
        d = int(model.inputs[0].shape[-1])
        f32, i32 = tf.float32, tf.int32
        spec = tf.TensorSpec
        self._fit = tf.function(self._fit_graph, autograph=False, input_signature=[
            spec([None, d], f32), spec([None, y_dim], f32),      # x, y (training)
            spec([None, d], f32), spec([None, y_dim], f32),      # x, y (validation)
            spec([None, None, None], i32), spec([None, None, None], f32),  # batches, weights
            spec([None, 2], i32), spec([], i32), spec([], i32),  # val chunks, epochs, patience
        ])
        self._predict = tf.function(lambda x: model(x, training=False), autograph=False,
                                    input_signature=[spec([None, d], f32)])

    # graph code ---------------------------------------------------------------------------------
    def _adam(self, grads) -> None:
        import tensorflow as tf

        t = self.t.assign_add(1.0)
        alpha = self.lr * tf.sqrt(1.0 - tf.pow(BETA_2, t)) / (1.0 - tf.pow(BETA_1, t))
        for var, m, v, g in zip(self.vars, self.m, self.v, grads, strict=True):
            m.assign_add((g - m) * (1.0 - BETA_1))
            v.assign_add((tf.square(g) - v) * (1.0 - BETA_2))
            var.assign_sub(alpha * m / (tf.sqrt(v) + EPSILON))

    def _validation(self, xv, yv, bounds):
        import tensorflow as tf

        pred = self.model(xv, training=False)

        def body(k, acc):
            a, b = bounds[k, 0], bounds[k, 1]
            loss = self.val_loss(yv[a:b], tf.ones([b - a], tf.float32), pred[a:b])
            return k + 1, acc + tf.cast(loss, tf.float32) * tf.cast(b - a, tf.float32)

        _, total = tf.while_loop(lambda k, acc: k < tf.shape(bounds)[0], body,
                                 (tf.constant(0), tf.constant(0.0)))
        return total / tf.cast(bounds[-1, 1] - bounds[0, 0], tf.float32)

    def _fit_graph(self, x, y, xv, yv, batches, weights, bounds, epochs, patience):
        import tensorflow as tf

        for slot in (*self.m, *self.v):
            slot.assign(tf.zeros_like(slot))
        self.t.assign(0.0)
        steps = tf.shape(batches)[1]

        def train_step(e, s, acc):
            idx = batches[e, s]
            with tf.GradientTape() as tape:
                pred = self.model(tf.gather(x, idx), training=True)
                loss = tf.cast(self.loss(tf.gather(y, idx), weights[e, s], pred), tf.float32)
            grads = tape.gradient(loss, self.vars)
            grads = [tf.zeros_like(v) if g is None else g
                     for g, v in zip(grads, self.vars, strict=True)]
            self._adam(grads)
            return s + 1, acc + loss

        def snapshot():
            for b, v in zip(self.best, self.vars, strict=True):
                b.assign(v)
            return tf.constant(0)

        def epoch(e, best, best_e, wait, tr, va):
            _, acc = tf.while_loop(lambda s, acc: s < steps,
                                   lambda s, acc: train_step(e, s, acc),
                                   (tf.constant(0), tf.constant(0.0)))
            vl = self._validation(xv, yv, bounds)
            improved = vl < best  # strict: ties keep the earlier epoch; NaN never improves
            wait = tf.cond(improved, snapshot, lambda: wait + 1)
            return (e + 1, tf.where(improved, vl, best), tf.where(improved, e, best_e), wait,
                    tr.write(e, acc / tf.cast(steps, tf.float32)), va.write(e, vl))

        ta = lambda: tf.TensorArray(tf.float32, size=0, dynamic_size=True)  # noqa: E731
        e, best, best_e, _, tr, va = tf.while_loop(
            lambda e, best, best_e, wait, tr, va: tf.logical_and(e < epochs, wait < patience),
            epoch,
            (tf.constant(0), tf.constant(np.inf, tf.float32), tf.constant(-1), tf.constant(0),
             ta(), ta()),
        )
        for var, b in zip(self.vars, self.best, strict=True):  # restore the best epoch
            var.assign(b)
        return e, best_e, best, tr.stack(), va.stack()

    # python API ---------------------------------------------------------------------------------
    def fit(self, initial: list[np.ndarray], x, y, xv, yv, batches: np.ndarray,
            weights: np.ndarray | None, epochs: int, patience: int,
            val_groups: np.ndarray | None = None) -> FitResult:
        """Re-initialise the model with ``initial``, train, restore the best epoch's weights.

        ``val_groups`` (e.g. the validation class labels) orders the validation samples so that
        each chunk holds every group; it matters only above :data:`VAL_CHUNK` samples.
        """
        self.model.set_weights(initial)
        y, yv = _as_2d(y), _as_2d(yv)
        if weights is None:
            weights = np.ones(batches.shape, np.float32)
        big = val_groups is not None and len(xv) > VAL_CHUNK
        order = stratified_order(val_groups) if big else np.arange(len(xv))
        e, best_e, best, tr, va = self._fit(
            np.asarray(x, np.float32), y, np.asarray(xv, np.float32)[order], yv[order],
            batches.astype(np.int32), weights.astype(np.float32), val_bounds(len(xv)),
            np.int32(min(epochs, batches.shape[0])), np.int32(patience),
        )
        if int(best_e) < 0:
            raise FloatingPointError(f"{self.model.name}: the validation loss was never finite "
                                     f"(last: {va.numpy()[-1]}); training diverged")
        return FitResult(int(e), int(best_e) + 1, float(best), tr.numpy(), va.numpy())

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict(np.asarray(x, np.float32)).numpy()


def _as_2d(a) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a[:, None] if a.ndim == 1 else a
