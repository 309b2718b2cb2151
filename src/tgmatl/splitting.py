"""The one split every stage shares: a held-out test set, then stratified folds over the rest.

Strata are class × coarse area bin (``split.geometry_bins`` quantile bins of box area over *all*
samples). The bins only balance the split; nothing a model or a score uses is fitted on them.

Small strata are merged so that stratification never fails (the authors' split crashes on a
class × box-label stratum of one sample):

1. within a class, the smallest stratum (ties: lowest bin) is merged into its neighbouring bin
   range (the smaller neighbour; ties: the lower one) until every stratum of the class holds at
   least ``min_count`` samples or the class is one stratum;
2. classes still below ``min_count`` are pooled into one stratum;
3. if that pool is still below ``min_count``, its samples (``leftover``) are assigned
   deterministically instead of by scikit-learn: in a seeded order, each goes where the shortfall
   is largest (test vs rest by ``test_size``; among folds, the fold with fewest samples, ties by
   lower fold id), a round-robin that keeps sizes balanced.

``min_count`` is ``max(2, ⌈1 / min(test_size, 1 - test_size)⌉)`` for the test split (every
stratum expects a sample on both sides; raised further if scikit-learn would see more strata
than samples on one side) and ``split.folds`` for the folds, recomputed on the non-test samples.
Test split: ``StratifiedShuffleSplit``; folds: ``StratifiedKFold(shuffle=True)``, both seeded.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from tgmatl.config import SplitParams
from tgmatl.errors import InputError

log = logging.getLogger(__name__)
LEFTOVER = -1


def area_bins(area: np.ndarray, n_bins: int) -> np.ndarray:
    """[N] int bin of each area among ``n_bins`` quantile bins (edges over all given samples)."""
    area = np.asarray(area, np.float64)
    if n_bins <= 1 or area.size == 0:
        return np.zeros(area.size, np.int64)
    edges = np.quantile(area, np.arange(1, n_bins) / n_bins)
    return np.searchsorted(edges, area, side="right").astype(np.int64)


def merge_strata(class_ids: np.ndarray, bins: np.ndarray, min_count: int) -> np.ndarray:
    """[N] int stratum ids (>= 0) after merging; :data:`LEFTOVER` for a pool below min_count."""
    class_ids = np.asarray(class_ids)
    bins = np.asarray(bins)
    strata = np.full(class_ids.size, LEFTOVER, np.int64)
    pool: list[np.ndarray] = []
    next_id = 0
    for c in np.unique(class_ids):
        in_class = class_ids == c
        # groups: contiguous runs of the class's non-empty bins, as [bin values]
        groups = [[b] for b in np.unique(bins[in_class])]
        counts = [int(np.sum(in_class & (bins == g[0]))) for g in groups]
        while len(groups) > 1 and min(counts) < min_count:
            i = int(np.argmin(counts))  # smallest; ties: lowest bin
            left = counts[i - 1] if i > 0 else math.inf
            right = counts[i + 1] if i + 1 < len(groups) else math.inf
            j = i - 1 if left <= right else i + 1
            lo, hi = min(i, j), max(i, j)
            groups[lo : hi + 1] = [groups[lo] + groups[hi]]
            counts[lo : hi + 1] = [counts[lo] + counts[hi]]
        if len(groups) == 1 and counts[0] < min_count:
            pool.append(np.flatnonzero(in_class))
            continue
        for g in groups:
            strata[in_class & np.isin(bins, g)] = next_id
            next_id += 1
    if pool:
        members = np.concatenate(pool)
        if members.size >= min_count:
            strata[members] = next_id
    return strata


def _seeded_order(n: int, seed: int, salt: int) -> np.ndarray:
    return np.random.default_rng([seed, salt]).permutation(n)


def _test_strata(classes: np.ndarray, bins: np.ndarray, test_size: float) -> np.ndarray:
    min_count = max(2, math.ceil(1.0 / min(test_size, 1.0 - test_size) - 1e-9))
    while True:
        strata = merge_strata(classes, bins, min_count)
        n = int(np.sum(strata != LEFTOVER))
        n_test = math.ceil(test_size * n)
        n_strata = np.unique(strata[strata != LEFTOVER]).size
        if n == 0 or n_strata <= min(n_test, n - n_test):
            return strata
        min_count += 1


def make_split(samples: pd.DataFrame, p: SplitParams, seed: int) -> pd.DataFrame:
    """``split.parquet`` rows (sample_id, test, fold) in the order of ``samples``.

    ``samples`` needs ``sample_id, class_id, xmin, xmax, ymin, ymax``.
    """
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    n = len(samples)
    classes = samples["class_id"].to_numpy()
    w = samples["xmax"].to_numpy(np.float64) - samples["xmin"].to_numpy(np.float64)
    h = samples["ymax"].to_numpy(np.float64) - samples["ymin"].to_numpy(np.float64)
    bins = area_bins(w * h, p.geometry_bins)

    # --- held-out test set
    test = np.zeros(n, bool)
    strata = _test_strata(classes, bins, p.test_size)
    strat_idx = np.flatnonzero(strata != LEFTOVER)
    if strat_idx.size:
        sss = StratifiedShuffleSplit(n_splits=1, test_size=p.test_size, random_state=seed)
        _, test_pos = next(sss.split(np.zeros(strat_idx.size), strata[strat_idx]))
        test[strat_idx[test_pos]] = True
    leftover = np.flatnonzero(strata == LEFTOVER)
    assigned = strata != LEFTOVER
    for i in leftover[_seeded_order(leftover.size, seed, 0)]:
        n_done, n_test = int(assigned.sum()), int(test.sum())
        # shortfall of each side against test_size if this sample were added; ties: the rest
        test_short = p.test_size * (n_done + 1) - n_test
        rest_short = (1.0 - p.test_size) * (n_done + 1) - (n_done - n_test)
        test[i] = test_short > rest_short
        assigned[i] = True
    _log_strata("test split", strata, leftover.size)

    # --- folds over the rest
    rest = np.flatnonzero(~test)
    if rest.size < p.folds:
        raise InputError(
            f"split.folds={p.folds} but only {rest.size} sample(s) remain outside the test split "
            f"(split.test_size={p.test_size}, {n} samples)"
        )
    fold = np.full(n, -1, np.int32)
    rest_strata = merge_strata(classes[rest], bins[rest], p.folds)
    strat_pos = np.flatnonzero(rest_strata != LEFTOVER)
    if strat_pos.size:
        skf = StratifiedKFold(n_splits=p.folds, shuffle=True, random_state=seed)
        for f, (_, val_pos) in enumerate(
            skf.split(np.zeros(strat_pos.size), rest_strata[strat_pos])
        ):
            fold[rest[strat_pos[val_pos]]] = f
    left_pos = np.flatnonzero(rest_strata == LEFTOVER)
    for i in rest[left_pos[_seeded_order(left_pos.size, seed, 1)]]:
        sizes = np.bincount(fold[fold >= 0], minlength=p.folds)
        fold[i] = int(np.argmin(sizes))  # fewest samples; ties: lowest fold id
    _log_strata("folds", rest_strata, left_pos.size)

    return pd.DataFrame({"sample_id": samples["sample_id"].to_numpy(), "test": test, "fold": fold})


def _log_strata(what: str, strata: np.ndarray, n_leftover: int) -> None:
    n_strata = np.unique(strata[strata >= 0]).size
    log.info(
        "%s: %d strata after merging, %d sample(s) assigned round-robin", what, n_strata, n_leftover
    )
