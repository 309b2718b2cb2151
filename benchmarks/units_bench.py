"""Projection training per unit-epoch, side by side (``bench_training.py --units``): today's
per-unit :class:`~tgmatl.training.loop.CompiledFit`, the batched run
(:class:`~tgmatl.training.batched.BatchedFit`, every unit at once) and the authors'-style Keras
``fit`` (batch 32, validation data, ``ModelCheckpoint`` on ``val_loss``).

Synthetic units (AWIR's class proportions, classes partly visible in the embedding), MATL's loss
and hinge criterion, ``params.yaml`` train.* otherwise, a fixed number of epochs (no early stop):
demo size (63 training samples, 64-d) and survey size (700 training samples, 384-d and 768-d),
each unit with its own rows, batch plan and start. The three are timed in interleaved rounds
after a warm-up call (tracing), so the machine's other load hits them alike; the table shows
the best round of each.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tgmatl.config import TrainParams
from tgmatl.params import load_params, read_section
from tgmatl.training import models
from tgmatl.training.batched import BatchedFit, UnitPlan
from tgmatl.training.loop import CompiledFit
from tgmatl.training.schedule import class_balanced_batches, fold_rng
from tgmatl.training.setups import get_setup

ROOT = Path(__file__).resolve().parents[1]
# (label, training samples, width, units in the batched run, epochs)
SIZES = (("demo", 63, 64, 32, 30), ("survey 384-d", 700, 384, 16, 4),
         ("survey 768-d", 700, 768, 16, 4))
SETUP = "matl"


def _data(n_train: int, dim: int, n_units: int, train: TrainParams):
    rng = np.random.default_rng(0)
    n_val = max(9, n_train // 7)
    n = n_train + n_val
    counts = np.array([116, 51, 73]) * n // 240
    counts[0] += n - counts.sum()
    cls = np.repeat([0, 1, 2], counts)
    x = (rng.normal(size=(3, dim))[cls] + rng.normal(size=(n, dim))).astype(np.float32)
    feat = rng.uniform(size=(n, 2))
    y = np.column_stack([cls, (feat[:, 0] * 3).astype(int).clip(0, 2), feat]).astype(np.float32)
    model = models.projection_head(dim, train.projection)
    plans = []
    for u in range(n_units):
        perm = fold_rng(0, u, "rows").permutation(n)
        tr, va = perm[:n_train], perm[n_train:]
        b = class_balanced_batches(cls[tr], train.batch_size, train.epochs,
                                   fold_rng(0, u, "batches"))
        plans.append(UnitPlan(x, y, tr, va, b,
                              models.init_weights(model, fold_rng(0, u, "projection")),
                              val_groups=cls[va], source="synthetic"))
    return x, y, plans


def _keras_epoch(x, y, plan: UnitPlan, train: TrainParams, tmp: Path) -> float:
    """Median seconds of an authors'-style ``fit`` epoch after the first (which traces)."""
    import keras

    from tgmatl.training.losses import MATLLoss, pack_targets

    model = models.projection_head(x.shape[1], train.projection)
    model.compile(optimizer=keras.optimizers.Adam(train.lr),
                  loss=MATLLoss(train.margin, train.box_weight))
    marks: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            marks.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            marks.append(time.perf_counter())

    tr, va = plan.train_rows, plan.val_rows
    ckpt = keras.callbacks.ModelCheckpoint(str(tmp / "best.weights.h5"), monitor="val_loss",
                                           save_best_only=True, save_weights_only=True)
    model.fit(x[tr], pack_targets(y[tr, 0], y[tr, 1]), batch_size=32, epochs=train.epochs,
              validation_data=(x[va], pack_targets(y[va, 0], y[va, 1])),
              callbacks=[ckpt, Clock()], verbose=0)
    per = [b - a for a, b in zip(marks[0::2], marks[1::2], strict=True)]
    return statistics.median(per[1:]) if len(per) > 1 else per[0]


def units(quick: bool = False, rounds: int = 2) -> str:
    base = read_section(TrainParams, load_params(ROOT / "params.yaml"), "train")
    spec = get_setup(SETUP)
    lines = [f"projection training per unit-epoch ({SETUP}, train.projection "
             f"{list(base.projection)}, batch {base.batch_size}; best of {rounds} interleaved "
             f"rounds)", "",
             "| units | CompiledFit alone | batched (U units) | Keras fit | batched vs alone | "
             "batched vs Keras | Keras vs alone |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, n_train, dim, n_units, epochs in SIZES[:1] if quick else SIZES:
            train = dataclasses.replace(base, epochs=epochs, patience=epochs + 1)
            x, y, plans = _data(n_train, dim, n_units, train)
            model = models.projection_head(dim, train.projection)
            alone = CompiledFit(model, spec.train_loss(train, None), train.lr,
                                spec.validation_loss(train), y_dim=y.shape[1])
            batched = BatchedFit([dim, *train.projection], spec.objective(train, None),
                                 spec.validation_objective(train), train.lr, y.shape[1],
                                 chunk_mb=train.unit_chunk_mb)
            few = plans[:4]

            def run_alone(ps, alone=alone, x=x, y=y, train=train):
                for p in ps:
                    alone.fit(p.initial, x[p.train_rows], y[p.train_rows], x[p.val_rows],
                              y[p.val_rows], p.batches, None, train.epochs, train.patience,
                              val_groups=p.val_groups)

            run_alone(few[:1])                                   # traces
            batched.fit(plans[:2], train.epochs, train.patience)
            t_alone, t_batched, t_keras = [], [], []
            for _ in range(rounds):
                t0 = time.perf_counter()
                run_alone(few)
                t_alone.append((time.perf_counter() - t0) / (len(few) * epochs))
                t0 = time.perf_counter()
                batched.fit(plans, train.epochs, train.patience)
                t_batched.append((time.perf_counter() - t0) / (len(plans) * epochs))
                t_keras.append(_keras_epoch(x, y, plans[0], train, Path(tmp)))
            a, b, k = min(t_alone), min(t_batched), min(t_keras)
            lines.append(f"| {label} ({n_train} training samples, {dim}-d) | {a * 1e3:.2f} ms | "
                         f"{b * 1e3:.2f} ms (U = {n_units}) | {k * 1e3:.1f} ms | {a / b:.1f}x | "
                         f"{k / b:.0f}x | {k / a:.0f}x |")
            print(lines[-1], flush=True)
    return "\n".join(lines)
