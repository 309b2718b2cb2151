"""Task-guided selection masks, METHOD.md Eqs. 6-13.

For each class ``c`` with members ``I_c`` (ascending sample index):

- ``n_top = max(1, ⌊top_pct·|I_c|⌋)`` members with the largest score (ties: lower index first);
- ``R_c`` = the other members; ``n_rand = min(|R_c|, ⌊random_pct·|I_c|⌋)`` of them, drawn
  uniformly without replacement (``random="random"``, Eq. 11) or the next ``n_rand`` by score
  (``random="next"``, the authors' code);
- the mask is the union over classes.

The floors forgive binary round-off: a product within ``FLOOR_TOL`` below an integer counts as
that integer, so ``⌊0.29·100⌋ = 29`` (the float product is 28.999999999999996) and
``⌊(1/6)·6⌋ = 1``; a real product that close to an integer does not occur for sample counts.

Randomness: one ``np.random.default_rng(seed)`` draws the classes in ascending class-id order;
``R_c`` is drawn from in ascending index order, so the result depends only on the inputs and
the seed. Per unit the seed is :func:`derive_seed` ``(params seed, repeat, fold)``: units differ,
reruns are identical.

Scope (``sampling.scope``): ``dataset`` (METHOD default) computes one mask per fold over the
fold's training samples (:func:`select_folds`, the ``select`` stage). ``batch`` (the authors'
code) is applied by the training code, which calls :func:`select_mask` on each mini-batch's
scores and class ids (seed ``derive_seed(seed, repeat, fold, epoch, step)``); the ``select`` stage
still writes the per-fold dataset masks.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from tgmatl.config import SamplingParams
from tgmatl.errors import InputError

log = logging.getLogger(__name__)
# float64 round-off of fraction·n is ~1e-16·n; 1e-9 absorbs it for any realistic n (< 1e6)
FLOOR_TOL = 1e-9


def exact_floor(fraction: float, n: int) -> int:
    """``⌊fraction·n⌋``, immune to binary round-off of the product (see ``FLOOR_TOL``)."""
    return math.floor(float(fraction) * n + FLOOR_TOL)


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integers (e.g. params seed and fold), stable across runs/platforms."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def class_counts(n_c: int, top_pct: float, random_pct: float) -> tuple[int, int]:
    """``(n_top, n_rand)`` of Eqs. 7 and 10 for a class of ``n_c`` samples."""
    if n_c <= 0:
        return 0, 0
    n_top = min(n_c, max(1, exact_floor(top_pct, n_c)))
    n_rand = min(n_c - n_top, exact_floor(random_pct, n_c))
    return n_top, n_rand


def select_mask(
    scores: np.ndarray,
    class_ids: np.ndarray,
    top_pct: float,
    random_pct: float,
    random: str = "random",
    seed: int = 0,
) -> np.ndarray:
    """[N] bool selection mask of Eqs. 6-13 (see the module docstring)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    class_ids = np.asarray(class_ids).reshape(-1)
    if scores.shape != class_ids.shape:
        raise ValueError(f"scores {scores.shape} and class_ids {class_ids.shape} differ in length")
    if not 0.0 < top_pct <= 1.0:
        raise ValueError(f"top_pct: {top_pct} out of range (0, 1]")
    if not 0.0 <= random_pct <= 1.0:
        raise ValueError(f"random_pct: {random_pct} out of range [0, 1]")
    if random not in ("random", "next"):
        raise ValueError(f"random: {random!r} is not one of random|next")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores: non-finite value at index {int(np.argmin(np.isfinite(scores)))}")
    rng = np.random.default_rng(seed)
    mask = np.zeros(scores.shape[0], bool)
    for c in np.unique(class_ids):
        members = np.flatnonzero(class_ids == c)  # ascending index
        n_top, n_rand = class_counts(members.size, top_pct, random_pct)
        # stable sort on -score: equal scores keep ascending index order
        ranked = members[np.argsort(-scores[members], kind="stable")]
        mask[ranked[:n_top]] = True
        if n_rand == 0:
            continue
        if random == "next":
            mask[ranked[n_top : n_top + n_rand]] = True
        else:
            rest = np.sort(ranked[n_top:])
            mask[rng.choice(rest, size=n_rand, replace=False)] = True
    return mask


def select_folds(scores: pd.DataFrame, sampling: SamplingParams, seed: int) -> pd.DataFrame:
    """``masks.parquet`` rows (repeat, fold, sample_id, mask) for the training samples of every
    unit (repeat, fold); each unit's random draw is seeded by (seed, repeat, fold)."""
    for col in ("repeat", "fold", "sample_id", "role", "class_id", "score"):
        if col not in scores.columns:
            raise InputError(f"scores: missing column {col}")
    frames = []
    train = scores[scores["role"] == "train"]
    for (rep, fold), part in train.groupby(["repeat", "fold"], sort=True):
        part = part.sort_values("sample_id", kind="stable")
        try:
            mask = select_mask(
                part["score"].to_numpy(),
                part["class_id"].to_numpy(),
                sampling.top_pct,
                sampling.random_pct,
                sampling.random,
                seed=derive_seed(seed, int(rep), int(fold)),
            )
        except ValueError as exc:  # e.g. a non-finite score: bad input, not a bug
            raise InputError(f"repeat {rep}, fold {fold}: {exc}") from None
        frames.append(
            pd.DataFrame(
                {
                    "repeat": np.full(len(part), rep, np.int32),
                    "fold": np.full(len(part), fold, np.int32),
                    "sample_id": part["sample_id"].to_numpy(),
                    "mask": mask,
                }
            )
        )
        per_class = pd.Series(mask).groupby(part["class_id"].to_numpy()).agg(["sum", "size"])
        log.info("repeat %d, fold %d: selected %s", rep, fold, per_class.to_dict("index"))
    if not frames:
        raise InputError("scores: no training samples in any fold")
    return pd.concat(frames, ignore_index=True)
