"""Many projection trainings as one compiled run: every unit of a setup, its seed twins and
matl_tuned's λ grid train side by side on stacked weights ``[U, ...]``.

Why: one unit's step is a few hundred small ops (forward, loss, backward, Adam); on the demo's
and AWIR's tiny batches their dispatch, not their arithmetic, is the time. Stacked, each op does
the work of ``U`` units (batched matmul; the loss through ``tf.vectorized_map``), so the
dispatch is paid once a step for all of them.

Each unit keeps what it has alone (:class:`~tgmatl.training.loop.CompiledFit`): its batch plan,
initial weights, Adam state (step counter included), combiner state, early stopping and
best-epoch restore. Units of one run differ in size; the shorter ones are padded and masked:

- a step past a unit's own steps, or of a unit that has stopped, is no step at all (its Adam
  rates and counter increment are 0: weights, moments and counter stay bit for bit; a zero
  gradient would still have moved them);
- a batch narrower than the run's width, and a validation chunk smaller than the longest, carry
  a ``valid`` mask that the task losses (:class:`~tgmatl.training.setups.Objective`) apply to
  every role of a triplet, so padding rows take part in none.

For a fixed number of epochs a unit trained here equals the same unit trained alone to float
round-off (``tests/training/test_batched.py``). The run ends when every unit has stopped; it
goes in blocks of epochs (:data:`EPOCH_BLOCK`) so that only a block of each plan is in the
graph at once. Units are trained in chunks whose estimated memory (:func:`unit_bytes`) fits
``train.unit_chunk_mb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tgmatl.errors import InputError
from tgmatl.params import ParamsError
from tgmatl.training.combiners import Combiner, GradNorm, UncertaintyWeighting
from tgmatl.training.loop import BETA_1, BETA_2, EPSILON, FitResult
from tgmatl.training.schedule import VAL_CHUNK, stratified_order, val_bounds
from tgmatl.training.setups import Objective

# Epochs of the batch plans handed to the graph at a time (the run stops between blocks once
# every unit has stopped; units stop after ~30-60 epochs on the demo and AWIR).
EPOCH_BLOCK = 64
CHUNK_PARAM = "train.unit_chunk_mb"


@dataclass
class UnitPlan:
    """One unit's training run: rows of ``x`` it trains and validates on, its targets, batch plan
    (``[epochs, steps, width]`` indices into ``train_rows``), selection weights and start."""

    x: np.ndarray                   # [N, d] embeddings (shared by the units of a backbone)
    y: np.ndarray                   # [N, K] targets of every row of x (this unit's labels)
    train_rows: np.ndarray          # [n] rows of x, the order the batch plan indexes
    val_rows: np.ndarray            # [m] rows of x
    batches: np.ndarray             # [E, S, W] int
    initial: list[np.ndarray]       # projection weights: kernel, bias per layer
    weights: np.ndarray | None = None        # [E, S, W] selection weights (None: 1)
    task_weights: np.ndarray | None = None   # [T] (None: the objective's)
    criterion_weights: np.ndarray | None = None  # (None: the criterion's)
    val_groups: np.ndarray | None = None     # [m] validation classes (chunking order)
    source: str = ""                # backbone, named in errors


def unit_bytes(sizes: Sequence[int], width: int, steps: int, epochs: int, n_val: int) -> int:
    """Estimated float32 bytes one unit holds in a batched run: weights with their Adam
    moments, best copy and gradient; a block of its batch plan; activations; the triplet
    losses' ``[B, B]`` and validation chunk's ``[C, C]`` intermediates (a dozen each: the
    losses sum triplets by sorted counts, :func:`~tgmatl.training.losses.triplet.hinge_sum`,
    with no ``[B, B, B]`` cube)."""
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    chunk = min(n_val, VAL_CHUNK)
    floats = (7 * params + 2 * min(epochs, EPOCH_BLOCK) * steps * width
              + 4 * (width + n_val) * sum(sizes) + 12 * width ** 2 + 12 * chunk ** 2)
    return 4 * floats


def chunk_bounds(costs: Sequence[float], budget: float) -> list[tuple[int, int]]:
    """``[start, stop)`` of consecutive chunks whose summed ``costs`` fit ``budget``: as few as
    greedy packing needs, split evenly where that fits (else the greedy split). Why even: a
    chunk runs until its last unit stops, so a greedy split (say 31 units and 1) pays a whole
    second run for one unit."""
    n = len(costs)
    greedy, start = [], 0
    while start < n:
        used, stop = 0.0, start
        while stop < n and used + costs[stop] <= budget:
            used += costs[stop]
            stop += 1
        greedy.append((start, stop))
        start = stop
    size = -(-n // max(len(greedy), 1))
    even = [(a, min(n, a + size)) for a in range(0, n, size)]
    fits = len(even) == len(greedy) and all(sum(costs[a:b]) <= budget for a, b in even)
    return even if fits else greedy


def _pad(arrays: Sequence[np.ndarray], fill: float | int = 0) -> np.ndarray:
    """Stack along a new axis 0, padding every other axis to its maximum with ``fill``."""
    shape = [max(a.shape[i] for a in arrays) for i in range(arrays[0].ndim)]
    out = np.full((len(arrays), *shape), fill, arrays[0].dtype)
    for u, a in enumerate(arrays):
        out[(u, *(slice(0, s) for s in a.shape))] = a
    return out


def adam_steps(variables, m, v, g, t, lr: float, active):
    """:func:`adam_update` of every stacked variable in one XLA-compiled pass: unfused, its
    dozen elementwise passes over ``U`` units' weights were the largest cost of a step (runs
    1.2x (survey size) to 1.6x (demo size) slower), and one call per variable cost another 1.2x
    (survey size) to 1.6x (demo size, U = 8-64) in launches and poorer bandwidth (measured side
    by side). XLA compiles once per shape, i.e. per unit count of a chunk: a few times a
    stage. Returns ``[(var, m, v)]`` in the order of ``variables``."""
    import tensorflow as tf

    if "fn" not in _XLA:
        _XLA["fn"] = tf.function(
            lambda vs, ms, vv, gs, t, lr, on: [adam_update(*a, t, lr, on)
                                               for a in zip(vs, ms, vv, gs, strict=True)],
            jit_compile=True, autograph=False)
    return _XLA["fn"](list(variables), list(m), list(v), list(g), t,
                      tf.constant(lr, tf.float32), active)


_XLA: dict[str, Any] = {}


def adam_update(var, m, v, g, t, lr, active):
    """One Adam step of a stacked variable ``[U, ...]`` for the ``active`` [U] units, the same
    arithmetic as :meth:`CompiledFit._adam`. An inactive unit's rates are 0, so its weights and
    moments come out bit for bit unchanged (``x + 0``) while its gradient is finite: always so
    for a padded step (a batch of real samples). A stopped unit's moving weights are never read
    again (its result is its best-epoch snapshot). Rates instead of ``tf.where``: three fewer
    passes over the weights, which is what a demo-size step spends most on."""
    import tensorflow as tf

    on = tf.cast(active, tf.float32)
    alpha = on * lr * tf.sqrt(1.0 - tf.pow(BETA_2, t)) / (1.0 - tf.pow(BETA_1, t))  # [U]
    shape = tf.concat([tf.shape(alpha), tf.ones([tf.rank(var) - 1], tf.int32)], 0)
    m_new = m + (g - m) * tf.reshape(on * (1.0 - BETA_1), shape)
    v_new = v + (tf.square(g) - v) * tf.reshape(on * (1.0 - BETA_2), shape)
    return var - tf.reshape(alpha, shape) * m_new / (tf.sqrt(v_new) + EPSILON), m_new, v_new


class BatchedFit:
    """Train many units of one projection architecture at once (see the module doc).

    ``objective``: the task losses and default weights (:class:`Objective`); ``criterion``: the
    validation objective that picks each unit's best epoch; ``combiner``: a template whose kind
    and settings every unit gets (its own state per unit). ``chunk_mb``: the memory budget of
    one chunk of units (``train.unit_chunk_mb``).
    """

    def __init__(self, sizes: Sequence[int], objective: Objective, criterion: Objective,
                 lr: float, y_dim: int, combiner: Combiner | None = None,
                 chunk_mb: float = 256.0):
        import tensorflow as tf

        self.sizes = [int(s) for s in sizes]
        self.objective, self.criterion = objective, criterion
        self.lr = float(lr)
        self.y_dim = int(y_dim)
        self.combiner = combiner
        self.chunk_mb = float(chunk_mb)
        self.n_tasks = objective.n_tasks
        self.kind = combiner.kind if combiner is not None else "fixed"
        if self.kind not in ("fixed", "uncertainty", "gradnorm"):
            raise ValueError(f"BatchedFit: no batched form of combiner {self.kind!r}")
        self.traces = 0
        f32, i32, spec = tf.float32, tf.int32, tf.TensorSpec
        n_layers = len(self.sizes) - 1
        params_spec = [spec([None, a, b], f32) for a, b in zip(self.sizes[:-1], self.sizes[1:],
                                                                strict=True)]
        params_spec = [p for i in range(n_layers)
                       for p in (params_spec[i], spec([None, self.sizes[i + 1]], f32))]
        ut = spec([None, self.n_tasks], f32)
        u = spec([None], f32)
        ui = spec([None], i32)
        state_spec = {
            "params": params_spec, "m": params_spec, "v": params_spec, "best": params_spec,
            "t": u, "best_val": u, "best_epoch": ui, "wait": ui, "running": spec([None], tf.bool),
            "epochs_run": ui,
            # combiner state (unused entries stay at their inputs)
            "log_vars": ut, "lv_m": ut, "lv_v": ut, "best_log_vars": ut,
            "gn_w": ut, "gn_l0": ut, "best_gn_w": ut,
        }
        data_spec = {
            "x": spec([None, self.sizes[0]], f32),                 # pooled embeddings
            "y_train": spec([None, None, self.y_dim], f32),        # [U, n, K]
            "train_rows": spec([None, None], i32),                 # [U, n] rows of x
            "plan": spec([None, None, None, None], i32),           # [U, epochs, S, W]
            "plan_w": spec([None, None, None, None], f32),
            "width": ui, "steps": ui,
            "y_val": spec([None, None, self.y_dim], f32),          # [U, m, K]
            "val_rows": spec([None, None], i32),
            "val_idx": spec([None, None, None], i32),              # [U, chunks, C] into m
            "val_n": spec([None, None], f32),                      # [U, chunks] chunk sizes
            "task_w": ut, "crit_w": spec([None, criterion.n_tasks], f32),
        }
        self._run = tf.function(self._run_graph, autograph=False, input_signature=[
            state_spec, data_spec, spec([], i32), spec([], i32), spec([], i32), spec([], i32),
            spec([], f32)])
        self._predict = tf.function(self._forward, autograph=False, input_signature=[
            params_spec, spec([None, self.sizes[0]], f32)])

    # graph code ---------------------------------------------------------------------------------
    @staticmethod
    def _forward(params, x):
        """``[U, b, d]`` (or one ``[b, d]`` for every unit) ``-> [U, b, out]``: Dense (ReLU
        between) then L2 normalisation, as :func:`tgmatl.training.models.projection_head`
        computes it per unit."""
        import tensorflow as tf

        h = x
        n = len(params) // 2
        for i in range(n):
            if h.shape.rank == 2:
                h = tf.einsum("bd,udh->ubh", h, params[0]) + params[1][:, None, :]
            else:
                h = tf.matmul(h, params[2 * i]) + params[2 * i + 1][:, None, :]
            if i < n - 1:
                h = tf.nn.relu(h)
        inv = tf.minimum(tf.math.rsqrt(tf.reduce_sum(tf.square(h), axis=-1, keepdims=True)),
                         1.0 / 1e-12)  # keras.ops.normalize(order=2, epsilon=1e-12)
        return h * inv

    @staticmethod
    def _unit_tasks(objective: Objective, y, w, pred, valid):
        """[U, T] task losses, one unit per row (``tf.vectorized_map``: one op sequence for all)."""
        import tensorflow as tf

        fn, n_tasks = objective.tasks, objective.n_tasks
        return tf.vectorized_map(lambda a: tf.ensure_shape(
            tf.cast(fn(a[0], a[1], a[2], a[3]), tf.float32), [n_tasks]), (y, w, pred, valid))

    def _validation(self, params, data):
        """[U] validation criterion: chunk by chunk (the chunks :func:`val_bounds` gives each
        unit alone), weighted by the chunk sizes."""
        import tensorflow as tf

        xv = tf.gather(data["x"], data["val_rows"])
        pred = self._forward(params, xv)                       # [U, m, out]
        idx, sizes = data["val_idx"], data["val_n"]
        width = tf.shape(idx)[2]

        def body(k, acc):
            rows = idx[:, k]                                   # [U, C]
            valid = tf.range(width)[None, :] < tf.cast(sizes[:, k], tf.int32)[:, None]
            p = tf.gather(pred, rows, batch_dims=1)
            y = tf.gather(data["y_val"], rows, batch_dims=1)
            terms = self._unit_tasks(self.criterion, y, tf.ones(tf.shape(valid)), p, valid)
            loss = tf.reduce_sum(data["crit_w"] * terms, axis=1)
            return k + 1, acc + tf.where(sizes[:, k] > 0, loss * sizes[:, k], 0.0)

        _, total = tf.while_loop(lambda k, acc: k < tf.shape(idx)[1], body,
                                 (tf.constant(0), tf.zeros([tf.shape(idx)[0]])))
        return total / tf.reduce_sum(sizes, axis=1)

    def _objective(self, losses, state, data):
        """[U] objective of each unit from its [U, T] task losses (the combiner's form)."""
        import tensorflow as tf

        if self.kind == "uncertainty":
            lv = state["log_vars"]
            return tf.reduce_sum(tf.exp(-lv) * losses + lv, axis=1)
        if self.kind == "gradnorm":
            return tf.reduce_sum(tf.stop_gradient(state["gn_w"]) * losses, axis=1)
        return tf.reduce_sum(data["task_w"] * losses, axis=1)

    def _task_weights(self, state, data):
        import tensorflow as tf

        if self.kind == "uncertainty":
            return tf.exp(-state["log_vars"])
        if self.kind == "gradnorm":
            return state["gn_w"]
        return data["task_w"]

    def _step(self, state, data, e_local, s):
        """One step of every unit (masked where a unit has no step)."""
        import tensorflow as tf

        active = tf.logical_and(state["running"], s < data["steps"])           # [U]
        idx = data["plan"][:, e_local, s]                                      # [U, W]
        w = data["plan_w"][:, e_local, s]
        width = tf.shape(idx)[1]
        valid = tf.range(width)[None, :] < data["width"][:, None]
        x = tf.gather(data["x"], tf.gather(data["train_rows"], idx, batch_dims=1))
        y = tf.gather(data["y_train"], idx, batch_dims=1)
        params = state["params"]
        gradnorm = self.kind == "gradnorm"
        watched = list(params) + ([state["log_vars"]] if self.kind == "uncertainty" else [])
        with tf.GradientTape(persistent=gradnorm) as tape:
            tape.watch(watched)
            losses = self._unit_tasks(self.objective, y, w, self._forward(params, x), valid)
            obj = self._objective(losses, state, data)
            total = tf.reduce_sum(tf.where(active, obj, 0.0))
            parts = ([tf.reduce_sum(tf.where(active, losses[:, t], 0.0))
                      for t in range(self.n_tasks)] if gradnorm else [])
        grads = tape.gradient(total, watched)
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, watched,
                                                                       strict=True)]
        norms = None
        if gradnorm:  # ||∇_W L_t|| per unit on the last kernel (units are independent)
            kernel = params[-2]
            norms = tf.stack([tf.norm(tape.gradient(p, kernel), axis=[1, 2]) for p in parts],
                             axis=1)
            del tape
        t = state["t"] + tf.cast(active, tf.float32)
        new = dict(state)
        new["t"] = t
        out = adam_steps(params, state["m"], state["v"], grads[:len(params)], t, self.lr, active)
        new["params"] = [o[0] for o in out]
        new["m"] = [o[1] for o in out]
        new["v"] = [o[2] for o in out]
        on = active[:, None]
        if self.kind == "uncertainty":
            [(lv, lm, lvv)] = adam_steps([state["log_vars"]], [state["lv_m"]], [state["lv_v"]],
                                         [grads[-1]], t, float(self.combiner.lr or self.lr),
                                         active)
            new["log_vars"] = tf.where(on, tf.clip_by_value(lv, *self.combiner.bounds), lv)
            new["lv_m"], new["lv_v"] = lm, lvv
        if gradnorm:
            from tgmatl.training.losses import gradnorm_update

            comb = self.combiner
            l0 = tf.where(state["gn_l0"] > 0.0, state["gn_l0"], losses)
            upd = tf.vectorized_map(lambda a: gradnorm_update(a[0], a[1], a[2], a[3], comb.alpha,
                                                              comb.step_size)[0],
                                    (state["gn_w"], norms, losses, l0))
            new["gn_l0"] = tf.where(on, l0, state["gn_l0"])
            new["gn_w"] = tf.where(on, upd, state["gn_w"])
        return new, tf.where(active, obj, 0.0), tf.where(on, losses, 0.0), active

    def _run_graph(self, state, data, e0, e1, epochs, patience, min_delta):
        """Epochs ``[e0, e1)`` of every still running unit; ``data["plan"]`` holds those epochs."""
        import tensorflow as tf

        self.traces += 1  # Python side effect: runs once per trace
        n_units = tf.shape(data["steps"])[0]
        max_steps = tf.shape(data["plan"])[2]
        n_steps = tf.cast(data["steps"], tf.float32)
        ta = lambda dtype=tf.float32: tf.TensorArray(dtype, size=0, dynamic_size=True)  # noqa: E731

        def epoch(e, st, tr, va, tl, trace, act):
            def step(s, st, acc, tacc, trace, act):
                st, obj, losses, active = self._step(st, data, e - e0, s)
                k = (e - e0) * max_steps + s
                return (s + 1, st, acc + obj, tacc + losses,
                        trace.write(k, self._task_weights(st, data)), act.write(k, active))

            _, st, acc, tacc, trace, act = tf.while_loop(
                lambda s, *_: s < max_steps, step,
                (tf.constant(0), st, tf.zeros([n_units]), tf.zeros([n_units, self.n_tasks]),
                 trace, act))
            vl = self._validation(st["params"], data)
            running = st["running"]
            improved = tf.logical_and(running, vl < st["best_val"] - min_delta)
            new = dict(st)
            on = improved[:, None]
            new["best"] = [tf.where(tf.reshape(improved, tf.concat(
                [[-1], tf.ones([tf.rank(p) - 1], tf.int32)], 0)), p, b)
                for p, b in zip(st["params"], st["best"], strict=True)]
            new["best_log_vars"] = tf.where(on, st["log_vars"], st["best_log_vars"])
            new["best_gn_w"] = tf.where(on, st["gn_w"], st["best_gn_w"])
            new["best_val"] = tf.where(improved, vl, st["best_val"])
            new["best_epoch"] = tf.where(improved, e, st["best_epoch"])
            wait = tf.where(improved, 0, tf.where(running, st["wait"] + 1, st["wait"]))
            new["wait"] = wait
            new["epochs_run"] = st["epochs_run"] + tf.cast(running, tf.int32)
            new["running"] = running & (e + 1 < epochs) & (wait < patience)
            return (e + 1, new, tr.write(e - e0, acc / n_steps), va.write(e - e0, vl),
                    tl.write(e - e0, tacc / n_steps[:, None]), trace, act)

        _, state, tr, va, tl, trace, act = tf.while_loop(
            lambda e, st, *_: tf.logical_and(e < e1, tf.reduce_any(st["running"])), epoch,
            (e0, state, ta(), ta(), ta(), ta(), ta(tf.bool)))
        return state, tr.stack(), va.stack(), tl.stack(), trace.stack(), act.stack()

    # python API ---------------------------------------------------------------------------------
    def fit(self, plans: Sequence[UnitPlan], epochs: int, patience: int,
            min_delta: float = 0.0) -> list[tuple[FitResult, list[np.ndarray]]]:
        """Train every plan; per plan its :class:`FitResult` and best-epoch weights (numpy, the
        model's ``get_weights`` order). Chunks of units follow ``chunk_mb``."""
        if not plans:
            return []
        widths = {p.x.shape[1] for p in plans}
        if len(widths) > 1 or self.sizes[0] not in widths:
            named = sorted({f"{p.source or '?'} ({p.x.shape[1]}-d)" for p in plans})
            raise InputError(f"backbone {', '.join(named)}: the units of one batched run need "
                             f"one input width, the projection takes {self.sizes[0]}-d")
        budget = self.chunk_mb * 2**20
        costs = [unit_bytes(self.sizes, p.batches.shape[2], p.batches.shape[1],
                            min(epochs, p.batches.shape[0]), len(p.val_rows)) for p in plans]
        if max(costs) > budget:
            raise ParamsError(f"{CHUNK_PARAM}: {self.chunk_mb:g} MB is less than one unit needs "
                              f"({max(costs) / 2**20:.1f} MB: input {self.sizes[0]}-d, "
                              f"{max(p.batches.shape[2] for p in plans)}-sample batches, "
                              f"{max(len(p.val_rows) for p in plans)} validation samples)")
        out: list[Any] = [None] * len(plans)
        for start, stop in chunk_bounds(costs, budget):
            for i, r in enumerate(self._fit_chunk(plans[start:stop], epochs, patience,
                                                  min_delta)):
                out[start + i] = r
        return out

    def _fit_chunk(self, plans: Sequence[UnitPlan], epochs: int, patience: int,
                   min_delta: float) -> list[tuple[FitResult, list[np.ndarray]]]:
        n = len(plans)
        # one pool of embeddings per distinct array (the units of a backbone share theirs)
        pool: dict[int, int] = {}
        blocks: list[np.ndarray] = []
        offset = 0
        for p in plans:
            if id(p.x) not in pool:
                pool[id(p.x)] = offset
                blocks.append(np.asarray(p.x, np.float32))
                offset += len(p.x)
        x = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        off = [pool[id(p.x)] for p in plans]
        e_max = min(epochs, min(p.batches.shape[0] for p in plans))
        y_train = _pad([np.asarray(p.y, np.float32)[p.train_rows] for p in plans])
        train_rows = _pad([(p.train_rows + o).astype(np.int32) for p, o in zip(plans, off,
                                                                               strict=True)])
        orders, bounds = [], []
        for p in plans:
            m = len(p.val_rows)
            big = p.val_groups is not None and m > VAL_CHUNK
            orders.append(stratified_order(p.val_groups) if big else np.arange(m))
            bounds.append(val_bounds(m))
        val_rows = _pad([(np.asarray(p.val_rows)[o] + f).astype(np.int32)
                         for p, o, f in zip(plans, orders, off, strict=True)])
        y_val = _pad([np.asarray(p.y, np.float32)[np.asarray(p.val_rows)[o]]
                      for p, o in zip(plans, orders, strict=True)])
        chunks = max(len(b) for b in bounds)
        c_max = max(int((b[:, 1] - b[:, 0]).max()) for b in bounds)
        val_idx = np.zeros((n, chunks, c_max), np.int32)
        val_n = np.zeros((n, chunks), np.float32)
        for u, b in enumerate(bounds):
            for k, (a, z) in enumerate(b):
                val_idx[u, k, :z - a] = np.arange(a, z)
                val_n[u, k] = z - a
        task_w = np.stack([np.asarray(self.objective.weights if p.task_weights is None
                                      else p.task_weights, np.float32) for p in plans])
        crit_w = np.stack([np.asarray(self.criterion.weights if p.criterion_weights is None
                                      else p.criterion_weights, np.float32) for p in plans])
        state = self._initial_state(plans)
        data = {"x": x, "y_train": y_train, "train_rows": train_rows,
                "width": np.array([p.batches.shape[2] for p in plans], np.int32),
                "steps": np.array([p.batches.shape[1] for p in plans], np.int32),
                "y_val": y_val, "val_rows": val_rows, "val_idx": val_idx, "val_n": val_n,
                "task_w": task_w, "crit_w": crit_w}
        records: list[list[np.ndarray]] = [[], [], [], [], []]
        e0 = 0
        while e0 < e_max:
            e1 = min(e_max, e0 + EPOCH_BLOCK)
            data["plan"] = _pad([p.batches[e0:e1].astype(np.int32) for p in plans])
            data["plan_w"] = _pad([np.ones(p.batches[e0:e1].shape, np.float32)
                                   if p.weights is None else
                                   p.weights[e0:e1].astype(np.float32) for p in plans])
            state, *rec = self._run(state, data, np.int32(e0), np.int32(e1), np.int32(e_max),
                                    np.int32(patience), np.float32(min_delta))
            for r, v in zip(records, rec, strict=True):
                r.append(v.numpy())
            if not state["running"].numpy().any():
                break
            e0 = e1
        return self._results(plans, state, [np.concatenate(r) for r in records])

    def _initial_state(self, plans: Sequence[UnitPlan]) -> dict[str, Any]:
        n, t = len(plans), self.n_tasks
        params = [np.stack([np.asarray(p.initial[i], np.float32) for p in plans])
                  for i in range(len(plans[0].initial))]
        if len(params) != 2 * (len(self.sizes) - 1):
            raise ValueError(f"BatchedFit: {len(params)} initial weights for a "
                             f"{len(self.sizes) - 1}-layer projection")
        zeros = [np.zeros_like(p) for p in params]
        comb = self.combiner
        lv = np.full((n, t), comb.initial if isinstance(comb, UncertaintyWeighting) else 0.0,
                     np.float32)
        gw = np.tile(np.asarray(comb.initial if isinstance(comb, GradNorm) else np.ones(t),
                                np.float32), (n, 1))
        z = np.zeros((n, t), np.float32)
        return {"params": params, "m": zeros, "v": [np.zeros_like(p) for p in params],
                "best": [p.copy() for p in params], "t": np.zeros(n, np.float32),
                "best_val": np.full(n, np.inf, np.float32), "best_epoch": np.full(n, -1, np.int32),
                "wait": np.zeros(n, np.int32), "running": np.ones(n, bool),
                "epochs_run": np.zeros(n, np.int32), "log_vars": lv, "lv_m": z, "lv_v": z,
                "best_log_vars": lv.copy(), "gn_w": gw, "gn_l0": z, "best_gn_w": gw.copy()}

    def _results(self, plans, state, records) -> list[tuple[FitResult, list[np.ndarray]]]:
        tr, va, tl, trace, act = records
        epochs = state["epochs_run"].numpy()
        best_e = state["best_epoch"].numpy()
        best_val = state["best_val"].numpy()
        best = [b.numpy() for b in state["best"]]
        comb = self.combiner
        out = []
        for u, p in enumerate(plans):
            e = int(epochs[u])
            if best_e[u] < 0:
                raise FloatingPointError(f"unit {u} of a batched run ({p.source or 'projection'})"
                                         f": the validation loss was never finite (last: "
                                         f"{va[e - 1, u] if e else 'none'}); training diverged")
            res = FitResult(e, int(best_e[u]) + 1, float(best_val[u]),
                            tr[:e, u].copy(), va[:e, u].copy())
            if comb is not None:
                steps = trace[act[:, u], u].astype(np.float64)  # the unit's own steps
                if isinstance(comb, UncertaintyWeighting):
                    log_vars = state["best_log_vars"].numpy()[u].astype(np.float64)
                    weights = np.exp(-state["best_log_vars"].numpy()[u]).astype(np.float64)
                else:
                    log_vars = None
                    weights = (state["best_gn_w"].numpy()[u].astype(np.float64)
                               if isinstance(comb, GradNorm) else steps[-1])
                res = FitResult(res.epochs, res.best_epoch, res.best_val_loss, res.train_loss,
                                res.val_loss, task_loss=tl[:e, u].astype(np.float64),
                                task_weights=weights, weight_trace=steps, log_vars=log_vars,
                                combiner=comb.summary())
            out.append((res, [b[u] for b in best]))
        return out

    def predict(self, weights: Sequence[Sequence[np.ndarray]], x: np.ndarray,
                group: int = 8) -> list[np.ndarray]:
        """Each unit's projection of ``x`` ``[N, out]`` (weights in ``get_weights`` order), a
        few units at a time (the hidden layer of all of them at once would be large)."""
        out: list[np.ndarray] = []
        x = np.asarray(x, np.float32)
        for g in range(0, len(weights), group):
            part = weights[g:g + group]
            params = [np.stack([np.asarray(w[i], np.float32) for w in part])
                      for i in range(len(part[0]))]
            out.extend(self._predict(params, x).numpy())
        return out


__all__ = ["CHUNK_PARAM", "EPOCH_BLOCK", "BatchedFit", "UnitPlan", "chunk_bounds", "unit_bytes"]
