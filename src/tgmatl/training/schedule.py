"""Seeds and batch schedules: everything random in training is drawn here, in numpy, up front.

A run's whole batch plan (``[epochs, steps, width]`` sample indices) is computed before training so
that the compiled loop (:mod:`tgmatl.training.loop`) never leaves the graph, and so that the same
(seed, fold) gives the same batches in every run.
"""

from __future__ import annotations

import math

import numpy as np

# Validation sets larger than this are scored in fixed chunks (the batch-all loss holds an
# n^3 triplet tensor); the demo and AWIR have ~10 validation samples a fold.
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
    loop. Vectorised over epochs (in chunks that bound the ``[epochs, steps, n]`` work arrays).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        raise ValueError(f"class_balanced_batches: need at least 2 samples, got {n}")
    b = min(n, batch_size)
    steps = math.ceil(n / b)
    members_of = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    step_of = np.empty((epochs, n), np.int64)
    rows = np.arange(epochs)[:, None]
    for members in members_of:
        perm = rng.permuted(np.tile(members, (epochs, 1)), axis=1)
        first = rng.integers(steps, size=(epochs, 1))
        step_of[rows, perm] = (np.arange(len(members)) + first) % steps
    chunk = max(1, 2**22 // (steps * n))
    parts = []
    for e0 in range(0, epochs, chunk):
        # in_batch[e, s, i]: sample i is in batch s of epoch e
        in_batch = step_of[e0:e0 + chunk, None, :] == np.arange(steps)[None, :, None]
        for members in members_of:
            if len(members) < 2:
                continue
            for e, s in np.argwhere(in_batch[:, :, members].sum(axis=2) < 2):
                have = in_batch[e, s, members]
                extra = rng.choice(members[~have], size=2 - int(have.sum()), replace=False)
                in_batch[e, s, extra] = True
        parts.append(in_batch)
    in_batch = np.concatenate(parts)
    width = max(b, int(in_batch.sum(axis=2).max()))
    out = np.empty((epochs, steps, width), np.int32)
    for e0 in range(0, epochs, chunk):
        # the batch's own samples first (keys in [0, 1)), then random others (keys in [1, 2))
        block = in_batch[e0:e0 + chunk]
        key = rng.random(block.shape) + ~block
        out[e0:e0 + chunk] = np.argsort(key, axis=2)[:, :, :width]
    return out


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
