"""Seeds and batch schedules: everything random in training is drawn here, in numpy, up front.

A run's whole batch plan (``[epochs, steps, width]`` sample indices) is computed before training so
that the compiled loop (:mod:`tgmatl.training.loop`) never leaves the graph, and so that the same
(seed, fold) gives the same batches in every run.
"""

from __future__ import annotations

import math

import numpy as np

# Validation sets larger than this are scored in fixed chunks (memory: the hinge's [C, C]
# intermediates; the criterion of a unit is the same alone and batched); the demo and AWIR have
# ~10-100 validation samples a fold.
VAL_CHUNK = 256


# --- determinism ------------------------------------------------------------------------------
def set_determinism(seed: int) -> None:
    """Seed Python, numpy and TensorFlow and turn on deterministic TF kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fold_rng(seed: int, fold: int, purpose: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, fold, purpose).

    The projection of fold ``f`` starts from the same weights in every setup, so setups differ
    only by their loss.
    """
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, fold, tag]))


def unit_rng(seed: int, unit: tuple[int, int], purpose: str) -> np.random.Generator:
    """:func:`fold_rng` of an evaluation unit (repeat, fold): repeat 0 draws what a single
    run draws, so adding repeats leaves the first repeat's streams unchanged."""
    repeat, fold = unit
    if repeat == 0:
        return fold_rng(seed, fold, purpose)
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(np.random.SeedSequence([seed, fold, tag, repeat]))


def twin_rng(seed: int, unit: tuple[int, int], purpose: str, twin: int) -> np.random.Generator:
    """:func:`unit_rng` of a unit's seed twin (``train.twins``): twin 0 draws exactly what the
    unit draws alone; twin ``k > 0`` an independent stream of (seed, unit, purpose, k)."""
    if twin == 0:
        return unit_rng(seed, unit, purpose)
    repeat, fold = unit
    tag = int.from_bytes(purpose.encode()[:8].ljust(8, b"\0"), "little")
    # five entries: never the sequence of a unit_rng stream (three or four)
    return np.random.default_rng(np.random.SeedSequence([seed, fold, tag, repeat, twin]))


def twin_seed(seed: int, unit: tuple[int, int], twin: int) -> int:
    """An integer seed (scikit-learn's inner CV) of a unit's twin: ``seed`` itself for twin 0."""
    if twin == 0:
        return seed
    return int(twin_rng(seed, unit, "seed", twin).integers(2**31 - 1))


# --- batch schedules ----------------------------------------------------------------------------
def class_balanced_batches(
    labels: np.ndarray, batch_size: int, epochs: int, rng: np.random.Generator
) -> np.ndarray:
    """Index schedule ``[epochs, steps, width]`` where every batch holds >= 2 of each class.

    Each epoch every class's samples are shuffled and dealt out round-robin (from a random first
    batch) over the ``ceil(n / batch_size)`` batches, each sample once, so the class mix of every
    batch follows the training set. A class with at least two samples that got fewer than two in
    a batch is topped up with other samples of that class, so each batch has positives for every
    class present. Batches are then padded with random samples not already in them to one common
    width (at least ``min(n, batch_size)``), which keeps the plan rectangular for the compiled
    loop. Vectorised over epochs; time and memory O(epochs · n) (the plan's own size).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        raise ValueError(f"class_balanced_batches: need at least 2 samples, got {n}")
    b = min(n, batch_size)
    steps = math.ceil(n / b)
    classes, cls = np.unique(labels, return_inverse=True)
    members_of = [np.flatnonzero(cls == c) for c in range(len(classes))]
    step_of = np.empty((epochs, n), np.int64)
    rows = np.arange(epochs)[:, None]
    for members in members_of:
        perm = rng.permuted(np.tile(members, (epochs, 1)), axis=1)
        first = rng.integers(steps, size=(epochs, 1))
        step_of[rows, perm] = (np.arange(len(members)) + first) % steps
    # top-ups: (epoch, step, sample) for each class short of two in a batch (rare: small
    # classes); the work is O(epochs * n), never O(epochs * steps * n)
    cell = (rows * steps + step_of) * len(classes) + cls[None, :]
    count = np.bincount(cell.ravel(), minlength=epochs * steps * len(classes))
    count = count.reshape(epochs, steps, len(classes))
    sizes = np.array([len(m) for m in members_of])
    short = np.argwhere((count < 2) & (sizes >= 2)[None, None, :])
    extras: dict[tuple[int, int], list[int]] = {}
    for e, st, c in short:
        members = members_of[c]
        pool = members[step_of[e, members] != st]
        pick = rng.choice(pool, size=2 - int(count[e, st, c]), replace=False)
        extras.setdefault((int(e), int(st)), []).extend(int(i) for i in pick)
    own = np.bincount((rows * steps + step_of).ravel(), minlength=epochs * steps)
    own = own.reshape(epochs, steps)
    total = own.copy()
    for (e, st), extra in extras.items():
        total[e, st] += len(extra)
    width = max(b, int(total.max()))
    out = np.empty((epochs, steps, width), np.int32)
    chunk = max(1, 2**22 // (steps * width))
    for e0 in range(0, epochs, chunk):
        out[e0:e0 + chunk] = _fill_batches(step_of[e0:e0 + chunk], own[e0:e0 + chunk],
                                           total[e0:e0 + chunk], extras, e0, width, rng)
    return out


def _fill_batches(step_of: np.ndarray, own: np.ndarray, total: np.ndarray,
                  extras: dict[tuple[int, int], list[int]], e0: int, width: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``[E, steps, width]`` batches of a chunk of epochs: each batch's own samples (random
    order), its top-ups, then random samples not already in it up to ``width``."""
    epochs, n = step_of.shape
    steps = own.shape[1]
    rows = np.arange(epochs)[:, None]
    grouped = np.argsort(step_of * 2.0 + rng.random((epochs, n)), axis=1)  # by step, shuffled
    start = np.cumsum(own, axis=1) - own
    step_sorted = np.take_along_axis(step_of, grouped, axis=1)
    rank = np.arange(n)[None, :] - np.take_along_axis(start, step_sorted, axis=1)
    out = np.empty((epochs, steps, width), np.int64)
    out[rows, step_sorted, rank] = grouped
    # padding: from a random offset of one random permutation of the epoch's samples, the
    # first ones that are not in the batch (a uniform draw of the non-members)
    perm = rng.permuted(np.tile(np.arange(n), (epochs, 1)), axis=1)
    offset = rng.integers(n, size=(epochs, steps, 1))
    e3 = rows[:, :, None]
    window = perm[e3, (offset + np.arange(width)) % n]  # [E, steps, width]: width <= n
    member = step_of[e3, window] == np.arange(steps)[None, :, None]
    for (e, st), extra in extras.items():
        if e0 <= e < e0 + epochs:
            out[e - e0, st, own[e - e0, st]:total[e - e0, st]] = extra
            member[e - e0, st] |= np.isin(window[e - e0, st], extra)
    outsiders = np.take_along_axis(window, np.argsort(member, axis=2, kind="stable"), axis=2)
    slot = np.arange(width)[None, None, :] - total[:, :, None]  # pad number, < 0: filled
    pads = np.take_along_axis(outsiders, np.clip(slot, 0, None), axis=2)
    return np.where(slot >= 0, pads, out)


def shuffled_batches(n: int, batch_size: int, epochs: int, rng: np.random.Generator) -> np.ndarray:
    """Plain shuffled mini-batches ``[epochs, steps, min(n, batch_size)]``: each epoch a fresh
    permutation cut into full batches; the last batch is topped up with random samples of the
    epoch's other batches (so none repeats inside a batch)."""
    if n < 1:
        raise ValueError("shuffled_batches: no samples")
    b = min(n, batch_size)
    steps = math.ceil(n / b)
    perms = rng.permuted(np.tile(np.arange(n, dtype=np.int32), (epochs, 1)), axis=1)
    missing = steps * b - n
    if missing:
        head = (steps - 1) * b  # samples of the full batches, none of them in the last one
        pick = np.argsort(rng.random((epochs, head)), axis=1)[:, :missing]
        perms = np.concatenate([perms, np.take_along_axis(perms[:, :head], pick, 1)], axis=1)
    return perms.reshape(epochs, steps, b)


def val_bounds(n_val: int, chunk: int = VAL_CHUNK) -> np.ndarray:
    """``[chunks, 2]`` (start, stop) rows splitting ``n_val`` validation samples evenly."""
    k = max(1, math.ceil(n_val / chunk))
    edges = np.linspace(0, n_val, k + 1).round().astype(np.int32)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def stratified_order(labels: np.ndarray) -> np.ndarray:
    """A fixed order of the validation samples in which every class is spread evenly (sorted by
    each sample's relative position within its class), so that every contiguous chunk of
    :func:`val_bounds` holds each class in proportion."""
    labels = np.asarray(labels)
    position = np.empty(len(labels), np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.argsort(position, kind="stable")
