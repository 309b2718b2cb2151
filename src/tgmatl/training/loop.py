"""The compiled training loop: a whole run (epochs, steps, validation, early stopping, best-weight
restore) as one ``tf.function`` call.

Why: the data are tiny (tens of training samples a fold), so Keras ``fit`` spends nearly all its
time in per-epoch Python overhead (callbacks, data adapters, validation iterators, checkpoint
files). Here the batch plan is a tensor, Adam is written out, and the stopping rule is a
``tf.while_loop`` condition; a model built once and re-initialised per fold keeps one trace for
every fold (``autograph=False``: the graph code uses explicit loops, which traces ~3x faster).

Multi-task: with a ``combiner`` (:mod:`tgmatl.training.combiners`) the loss function returns the
[T] task losses of a batch and the combiner turns them into the objective (fixed weights,
uncertainty weighting, GradNorm); its weights are traced per step and returned in the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgmatl.training.combiners import Combiner, UncertaintyWeighting
from tgmatl.training.schedule import VAL_CHUNK, stratified_order, val_bounds

# Adam's constants, as keras.optimizers.Adam's defaults.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7

# (y_true [b, K], weight [b], y_pred) -> scalar, or [T] task losses with a combiner
LossFn = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class FitResult:
    epochs: int                 # epochs run (early stopping may end before the ceiling)
    best_epoch: int             # 1-based epoch whose weights were restored
    best_val_loss: float
    train_loss: np.ndarray      # per epoch: mean over the epoch's steps (of the objective)
    val_loss: np.ndarray        # per epoch
    # multi-task runs only (None otherwise):
    task_loss: np.ndarray | None = None      # [epochs, T] per epoch: mean task losses L_t
    task_weights: np.ndarray | None = None   # [T] weights on L_t at the restored epoch
    weight_trace: np.ndarray | None = None   # [steps, T] weights after every step
    log_vars: np.ndarray | None = None       # [T] uncertainty weighting's s_t, restored epoch
    combiner: dict[str, Any] | None = None   # the combiner's kind and settings

    def task_summary(self) -> dict[str, Any] | None:
        """JSON-ready multi-task figures (None for a single-loss run): the restored epoch's
        weights (and log-variances), the final step's weights, per-epoch task losses."""
        if self.task_loss is None:
            return None
        out: dict[str, Any] = {
            "combiner": self.combiner,
            "task_weights": self.task_weights.tolist(),
            "final_task_weights": self.weight_trace[-1].tolist(),
            "task_loss": self.task_loss.tolist(),
        }
        if self.log_vars is not None:
            out["log_vars"] = self.log_vars.tolist()
        return out


class CompiledFit:
    """Train one Keras model with Adam, early stopping and best-weight restore in one graph.

    ``loss(y_true, weight, y_pred)`` is the training loss of a batch; ``val_loss`` (default: the
    same) is evaluated once per epoch on the whole validation set (in :func:`val_bounds` chunks).
    Adam is written out (same update and defaults as ``keras.optimizers.Adam``) so that the whole
    run - every epoch, step and the stopping rule - lives inside one ``tf.while_loop``.

    With a ``combiner``, ``loss`` returns the [T] task losses and the combiner makes the
    objective; ``val_loss`` (scalar) defaults to ``combiner.eval_weights · task losses``.
    """

    def __init__(self, model, loss: LossFn, lr: float, val_loss: LossFn | None = None,
                 y_dim: int = 1, combiner: Combiner | None = None):
        import tensorflow as tf

        self.model = model
        self.loss = loss
        self.combiner = combiner
        self.lr = float(lr)
        self.vars = [v.value for v in model.trainable_variables]
        if combiner is not None:
            combiner.build(model)
            self.n_tasks = combiner.n_tasks
            extra, state, extra_lr = combiner.trainable, combiner.state, combiner.lr
            if val_loss is None:
                val_loss = self._eval_weighted(loss, combiner)
        else:
            self.n_tasks, extra, state, extra_lr = 1, [], [], None
        self.val_loss = val_loss or loss
        # Adam updates the model's variables and the combiner's trainable ones (own lr or ours)
        self.opt_vars = self.vars + list(extra)
        self.lrs = [self.lr] * len(self.vars) + [float(extra_lr or self.lr)] * len(extra)
        self.state_vars = self.vars + [v for v in state if all(v is not o for o in self.vars)]
        zeros = [tf.zeros(v.shape, v.dtype) for v in self.opt_vars]
        self.m = [tf.Variable(z, trainable=False) for z in zeros]
        self.v = [tf.Variable(z, trainable=False) for z in zeros]
        self.best = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False)
                     for v in self.state_vars]
        self.t = tf.Variable(0.0, trainable=False)
        d = int(model.inputs[0].shape[-1])
        f32, i32 = tf.float32, tf.int32
        spec = tf.TensorSpec
        self._fit = tf.function(self._fit_graph, autograph=False, input_signature=[
            spec([None, d], f32), spec([None, y_dim], f32),      # x, y (training)
            spec([None, d], f32), spec([None, y_dim], f32),      # x, y (validation)
            spec([None, None, None], i32), spec([None, None, None], f32),  # batches, weights
            spec([None, 2], i32), spec([], i32), spec([], i32),  # val chunks, epochs, patience
            spec([], f32),                                       # min_delta
        ])
        self._predict = tf.function(lambda x: model(x, training=False), autograph=False,
                                    input_signature=[spec([None, d], f32)])

    @staticmethod
    def _eval_weighted(loss: LossFn, combiner: Combiner) -> LossFn:
        def val_loss(y, w, pred):
            import tensorflow as tf

            losses = tf.cast(loss(y, w, pred), tf.float32)
            return tf.reduce_sum(tf.constant(combiner.eval_weights, tf.float32) * losses)

        return val_loss

    # graph code ---------------------------------------------------------------------------------
    def _adam(self, grads) -> None:
        import tensorflow as tf

        t = self.t.assign_add(1.0)
        alphas = {lr: lr * tf.sqrt(1.0 - tf.pow(BETA_2, t)) / (1.0 - tf.pow(BETA_1, t))
                  for lr in set(self.lrs)}
        for var, m, v, g, lr in zip(self.opt_vars, self.m, self.v, grads, self.lrs, strict=True):
            m.assign_add((g - m) * (1.0 - BETA_1))
            v.assign_add((tf.square(g) - v) * (1.0 - BETA_2))
            var.assign_sub(alphas[lr] * m / (tf.sqrt(v) + EPSILON))

    def _gradients(self, x, y, w):
        """(objective, [T] task losses, gradients of ``opt_vars``) of one batch; a combiner's
        post-step update (clipping, GradNorm) runs after Adam, in :meth:`_fit_graph`."""
        import tensorflow as tf

        comb = self.combiner
        persistent = comb is not None and comb.needs_kernel_norms
        with tf.GradientTape(persistent=persistent) as tape:
            pred = self.model(x, training=True)
            if comb is None:
                loss = tf.cast(self.loss(y, w, pred), tf.float32)
                losses = tf.reshape(loss, [1])
            else:
                losses = tf.ensure_shape(tf.cast(self.loss(y, w, pred), tf.float32),
                                         [self.n_tasks])
                loss = comb.objective(losses)
                # sliced inside the tape: a slice taken after it would have no gradient path
                parts = tf.unstack(losses) if persistent else []
        grads = tape.gradient(loss, self.opt_vars)
        grads = [tf.zeros_like(v) if g is None else g
                 for g, v in zip(grads, self.opt_vars, strict=True)]
        norms = None
        if persistent:  # GradNorm: ||∇_W L_t|| on the shared kernel, task by task
            per_task = [tape.gradient(part, comb.kernel) for part in parts]
            norms = tf.stack([tf.constant(0.0) if g is None else tf.norm(g) for g in per_task])
            del tape
        return loss, losses, grads, norms

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

    def _fit_graph(self, x, y, xv, yv, batches, weights, bounds, epochs, patience, min_delta):
        import tensorflow as tf

        for slot in (*self.m, *self.v):
            slot.assign(tf.zeros_like(slot))
        self.t.assign(0.0)
        if self.combiner is not None:
            self.combiner.reset()
        steps = tf.shape(batches)[1]

        def task_weights():
            if self.combiner is None:
                return tf.ones([1])
            return tf.cast(self.combiner.weights(), tf.float32)

        def train_step(e, s, acc, tacc, trace):
            idx = batches[e, s]
            loss, losses, grads, norms = self._gradients(tf.gather(x, idx), tf.gather(y, idx),
                                                         weights[e, s])
            self._adam(grads)
            if self.combiner is not None:
                self.combiner.after_step(losses, norms)
            trace = trace.write(e * steps + s, task_weights())
            return s + 1, acc + loss, tacc + losses, trace

        def snapshot():
            for b, v in zip(self.best, self.state_vars, strict=True):
                b.assign(v)
            return tf.constant(0)

        def epoch(e, best, best_e, wait, tr, va, tl, trace):
            _, acc, tacc, trace = tf.while_loop(
                lambda s, *_: s < steps,
                lambda s, acc, tacc, trace: train_step(e, s, acc, tacc, trace),
                (tf.constant(0), tf.constant(0.0), tf.zeros([self.n_tasks]), trace))
            vl = self._validation(xv, yv, bounds)
            # an improvement must beat the best by more than min_delta (strict: ties keep the
            # earlier epoch; NaN never improves), so a creeping criterion cannot hold the loop
            improved = vl < best - min_delta
            wait = tf.cond(improved, snapshot, lambda: wait + 1)
            n = tf.cast(steps, tf.float32)
            return (e + 1, tf.where(improved, vl, best), tf.where(improved, e, best_e), wait,
                    tr.write(e, acc / n), va.write(e, vl), tl.write(e, tacc / n), trace)

        ta = lambda: tf.TensorArray(tf.float32, size=0, dynamic_size=True)  # noqa: E731
        e, best, best_e, _, tr, va, tl, trace = tf.while_loop(
            lambda e, best, best_e, wait, *_: tf.logical_and(e < epochs, wait < patience),
            epoch,
            (tf.constant(0), tf.constant(np.inf, tf.float32), tf.constant(-1), tf.constant(0),
             ta(), ta(), ta(), ta()),
        )
        for var, b in zip(self.state_vars, self.best, strict=True):  # restore the best epoch
            var.assign(b)
        return (e, best_e, best, tr.stack(), va.stack(), tl.stack(), trace.stack(),
                task_weights())

    # python API ---------------------------------------------------------------------------------
    def fit(self, initial: list[np.ndarray], x, y, xv, yv, batches: np.ndarray,
            weights: np.ndarray | None, epochs: int, patience: int,
            val_groups: np.ndarray | None = None, min_delta: float = 0.0) -> FitResult:
        """Re-initialise the model with ``initial``, train, restore the best epoch's weights.

        An epoch improves when its validation value is below the best so far by more than
        ``min_delta``; ``patience`` epochs without one end the run.

        ``val_groups`` (e.g. the validation class labels) orders the validation samples so that
        each chunk holds every group; it matters only above :data:`VAL_CHUNK` samples.
        """
        self.model.set_weights(initial)
        y, yv = _as_2d(y), _as_2d(yv)
        if weights is None:
            weights = np.ones(batches.shape, np.float32)
        big = val_groups is not None and len(xv) > VAL_CHUNK
        order = stratified_order(val_groups) if big else np.arange(len(xv))
        e, best_e, best, tr, va, tl, trace, tw = self._fit(
            np.asarray(x, np.float32), y, np.asarray(xv, np.float32)[order], yv[order],
            batches.astype(np.int32), weights.astype(np.float32), val_bounds(len(xv)),
            np.int32(min(epochs, batches.shape[0])), np.int32(patience), np.float32(min_delta),
        )
        if int(best_e) < 0:
            raise FloatingPointError(f"{self.model.name}: the validation loss was never finite "
                                     f"(last: {va.numpy()[-1]}); training diverged")
        result = FitResult(int(e), int(best_e) + 1, float(best), tr.numpy(), va.numpy())
        comb = self.combiner
        if comb is None:
            return result
        log_vars = None
        if isinstance(comb, UncertaintyWeighting):
            log_vars = comb.log_vars.numpy().astype(np.float64)
        return dataclasses.replace(
            result, task_loss=tl.numpy().astype(np.float64),
            task_weights=tw.numpy().astype(np.float64),
            weight_trace=trace.numpy().astype(np.float64), log_vars=log_vars,
            combiner=comb.summary())

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._predict(np.asarray(x, np.float32)).numpy()


def _as_2d(a) -> np.ndarray:
    a = np.asarray(a, np.float32)
    return a[:, None] if a.ndim == 1 else a
