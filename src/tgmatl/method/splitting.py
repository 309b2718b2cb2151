"""The one split every stage shares: per repeat, a held-out test set and folds over the rest.

``split.parquet`` is a long table, one row per (repeat, sample): ``repeat`` (int32,
``0..eval.repeats-1``), ``sample_id``, ``test`` (bool), ``fold`` (int32; -1 for test samples).
A (repeat, fold) pair is one evaluation unit: train = ``~test & fold != f``, validation =
``fold == f``, test = the repeat's test samples.

Seeds: repeat ``r`` draws its folds from ``(seed, r)``; with ``eval.resplit`` it also redraws
the test split from ``(seed, r)``, otherwise every repeat keeps repeat 0's test split. A
repeat's draw never depends on how many repeats there are, so adding repeats keeps the earlier
ones unchanged.

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

``split.group: none`` (the paper's protocol) splits sample by sample: test split
``StratifiedShuffleSplit``, folds ``StratifiedKFold(shuffle=True)``, both seeded.

``split.group: scene`` keeps every scene (``scene_id``) whole: a scene's samples are all test
samples or all in one fold, so no background (and no shared tile) crosses roles.
scikit-learn's ``StratifiedGroupKFold`` is nearly deterministic (it orders groups by their class
spread; the seed only breaks ties), so repeats would redraw almost the same folds. Scenes are
instead assigned by :func:`assign_groups`: a seeded greedy pass in random order, then single
moves and pairwise swaps of scenes while they lower the squared deviation of every part's
stratum counts, size and number of scenes from its target share. The test split is the
two-part case (shares ``1 - test_size``, ``test_size``) in which the rest keeps at least
``split.folds`` scenes (so a survey needs ``split.folds + 1`` scenes; on one with few scenes
this can push the test share below ``test_size``: the achieved share is logged, with a warning
when it is off by more than 0.05; on the demo it is 0.700 in every repeat). The merged strata
above are the balanced counts (a leftover pool is one more stratum). There are fewer scenes than
samples, so the balance is coarser than with ``none`` (demo: fold sizes 8-11 vs 9).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from tgmatl.config import EvalParams, SplitParams
from tgmatl.errors import InputError

log = logging.getLogger(__name__)
LEFTOVER = -1
SPLIT_COLUMNS: tuple[str, ...] = ("repeat", "sample_id", "test", "fold")
_TEST, _FOLDS = 0, 1  # salts of the two draws of a repeat
_MAX_PASSES = 100


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


def _seed_seq(seed: int, repeat: int, salt: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, repeat, salt])


def _random_state(seed: int, repeat: int, salt: int) -> int:
    """An int seed for scikit-learn, derived from (seed, repeat, salt)."""
    return int(_seed_seq(seed, repeat, salt).generate_state(1)[0])


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


# --- sample by sample (split.group: none) -------------------------------------------------------
def _test_by_sample(
    classes: np.ndarray, bins: np.ndarray, test_size: float, seed: int, repeat: int
) -> np.ndarray:
    from sklearn.model_selection import StratifiedShuffleSplit

    n = classes.size
    test = np.zeros(n, bool)
    strata = _test_strata(classes, bins, test_size)
    strat_idx = np.flatnonzero(strata != LEFTOVER)
    if strat_idx.size:
        sss = StratifiedShuffleSplit(
            n_splits=1, test_size=test_size, random_state=_random_state(seed, repeat, _TEST)
        )
        _, test_pos = next(sss.split(np.zeros(strat_idx.size), strata[strat_idx]))
        test[strat_idx[test_pos]] = True
    leftover = np.flatnonzero(strata == LEFTOVER)
    assigned = strata != LEFTOVER
    order = np.random.default_rng(_seed_seq(seed, repeat, _TEST)).permutation(leftover.size)
    for i in leftover[order]:
        n_done, n_test = int(assigned.sum()), int(test.sum())
        # shortfall of each side against test_size if this sample were added; ties: the rest
        test_short = test_size * (n_done + 1) - n_test
        rest_short = (1.0 - test_size) * (n_done + 1) - (n_done - n_test)
        test[i] = test_short > rest_short
        assigned[i] = True
    _log_strata("test split", strata, leftover.size)
    return test


def _folds_by_sample(
    classes: np.ndarray, bins: np.ndarray, rest: np.ndarray, folds: int, seed: int, repeat: int
) -> np.ndarray:
    """[len(rest)] fold of each non-test sample."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.full(rest.size, -1, np.int32)
    rest_strata = merge_strata(classes[rest], bins[rest], folds)
    strat_pos = np.flatnonzero(rest_strata != LEFTOVER)
    if strat_pos.size:
        skf = StratifiedKFold(
            n_splits=folds, shuffle=True, random_state=_random_state(seed, repeat, _FOLDS)
        )
        for f, (_, val_pos) in enumerate(
            skf.split(np.zeros(strat_pos.size), rest_strata[strat_pos])
        ):
            fold[strat_pos[val_pos]] = f
    left_pos = np.flatnonzero(rest_strata == LEFTOVER)
    order = np.random.default_rng(_seed_seq(seed, repeat, _FOLDS)).permutation(left_pos.size)
    for i in left_pos[order]:
        sizes = np.bincount(fold[fold >= 0], minlength=folds)
        fold[i] = int(np.argmin(sizes))  # fewest samples; ties: lowest fold id
    _log_strata("folds", rest_strata, left_pos.size)
    return fold


# --- whole scenes (split.group: scene) ----------------------------------------------------------
def assign_groups(
    counts: np.ndarray, shares: Sequence[float], rng: np.random.Generator,
    min_groups: Sequence[int] | None = None,
) -> np.ndarray:
    """[G] part (``0..len(shares)-1``) of each group; part ``k`` gets ``>= min_groups[k]`` groups.

    ``counts`` [G, S]: samples of each stratum in each group. The cost is the squared deviation
    of each part's stratum counts, size and number of groups from ``share × total``. Groups are
    placed greedily in a random order (cheapest part; ties: lowest part); a part below its
    minimum then takes the cheapest groups of parts above theirs; then single moves and pairwise
    swaps are applied, in random order, while they lower the cost (moves never take a part below
    its minimum). Deterministic for the generator's state. ``min_groups`` defaults to 1 each.
    """
    counts = np.asarray(counts, np.float64)
    shares = np.asarray(shares, np.float64)
    n_groups, n_parts = counts.shape[0], shares.size
    least = np.ones(n_parts, np.int64) if min_groups is None else np.asarray(min_groups, np.int64)
    if least.shape != (n_parts,) or (least < 1).any():
        raise ValueError(f"min_groups: need {n_parts} values >= 1, got {min_groups}")
    if n_groups < least.sum():
        raise ValueError(f"counts: {n_groups} group(s) for parts of at least {least.tolist()}")
    # features: stratum counts, the group size and 1 (so sizes and group counts are balanced too)
    x = np.concatenate(
        [counts, counts.sum(axis=1, keepdims=True), np.ones((n_groups, 1))], axis=1
    )
    target = shares[:, None] / shares.sum() * x.sum(axis=0)[None, :]
    dev = -target  # dev[k] = part k's features - its target
    part = np.full(n_groups, -1, np.int64)
    members = np.zeros(n_parts, np.int64)
    for g in rng.permutation(n_groups):
        # cost increase of adding x to part k: 2 x·dev_k + |x|²  (the |x|² term is common)
        k = int(np.argmin(dev @ x[g]))
        part[g], members[k] = k, members[k] + 1
        dev[k] += x[g]
    sq = (x**2).sum(axis=1)
    for k in range(n_parts):  # parts below their minimum take the cheapest spare groups
        while members[k] < least[k]:
            donors = np.flatnonzero(members[part] > least[part])
            delta = 2.0 * ((dev[k] - dev[part[donors]]) * x[donors]).sum(axis=1) + 2.0 * sq[donors]
            g = int(donors[np.argmin(delta)])
            members[part[g]] -= 1
            dev[part[g]] -= x[g]
            part[g] = k
            members[k] += 1
            dev[k] += x[g]
    for _ in range(_MAX_PASSES):
        improved = False
        for g in rng.permutation(n_groups):  # moves: g from part a to part b
            a = part[g]
            if members[a] == least[a]:
                continue
            delta = 2.0 * (dev - dev[a]) @ x[g] + 2.0 * sq[g]
            delta[a] = 0.0
            b = int(np.argmin(delta))
            if delta[b] < -1e-9:
                dev[a] -= x[g]
                dev[b] += x[g]
                members[a] -= 1
                members[b] += 1
                part[g] = b
                improved = True
        for g in rng.permutation(n_groups):  # swaps: g (part a) with h (part b)
            a = part[g]
            e = x[g][None, :] - x  # [G, F]
            delta = 2.0 * ((dev[part] - dev[a]) * e).sum(axis=1) + 2.0 * (e**2).sum(axis=1)
            delta[part == a] = 0.0
            h = int(np.argmin(delta))
            if delta[h] < -1e-9:
                b = part[h]
                dev[a] += x[h] - x[g]
                dev[b] += x[g] - x[h]
                part[g], part[h] = b, a
                improved = True
        if not improved:
            break
    return part


def _group_counts(strata: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """[G, S] samples of each stratum (LEFTOVER one more stratum) in each group id 0..G-1."""
    _, s = np.unique(strata, return_inverse=True)
    out = np.zeros((int(groups.max()) + 1, int(s.max()) + 1), np.float64)
    np.add.at(out, (groups, s), 1.0)
    return out


def _test_by_scene(
    classes: np.ndarray, bins: np.ndarray, scenes: np.ndarray, p: SplitParams, seed: int,
    repeat: int,
) -> np.ndarray:
    test_size = p.test_size
    n_scenes = int(scenes.max()) + 1
    if n_scenes < p.folds + 1:
        raise InputError(
            f"split.folds={p.folds} but the samples hold only {n_scenes} scene(s); "
            f"split.group: scene needs one scene per fold and one for the test split; lower "
            f"split.folds or use split.group: none"
        )
    strata = _test_strata(classes, bins, test_size)
    rng = np.random.default_rng(_seed_seq(seed, repeat, _TEST))
    # the rest keeps at least one scene per fold
    side = assign_groups(_group_counts(strata, scenes), [1.0 - test_size, test_size], rng,
                         min_groups=[p.folds, 1])
    test = side[scenes] == 1
    level = logging.WARNING if abs(test.mean() - test_size) > 0.05 else logging.INFO
    log.log(
        level,
        "test split (repeat %d): %d of %d scenes, %d of %d samples (%.3f; split.test_size %.3f)",
        repeat, int(side.sum()), n_scenes, int(test.sum()), test.size, test.mean(), test_size,
    )
    return test


def _folds_by_scene(
    classes: np.ndarray, bins: np.ndarray, scenes: np.ndarray, rest: np.ndarray, p: SplitParams,
    seed: int, repeat: int,
) -> np.ndarray:
    """[len(rest)] fold of each non-test sample; a scene's samples share one fold."""
    _, local = np.unique(scenes[rest], return_inverse=True)
    n_rest_scenes = int(local.max()) + 1 if local.size else 0
    if n_rest_scenes < p.folds:
        raise InputError(
            f"split.folds={p.folds} but only {n_rest_scenes} scene(s) remain outside the test "
            f"split (repeat {repeat}; {int(scenes.max()) + 1} scenes, {scenes.size} samples, "
            f"split.test_size={p.test_size}, split.group: scene); lower split.folds or "
            f"split.test_size, or use split.group: none"
        )
    strata = merge_strata(classes[rest], bins[rest], p.folds)
    rng = np.random.default_rng(_seed_seq(seed, repeat, _FOLDS))
    part = assign_groups(_group_counts(strata, local), np.full(p.folds, 1.0 / p.folds), rng)
    return part[local].astype(np.int32)


# --- the split ----------------------------------------------------------------------------------
def make_split(
    samples: pd.DataFrame, p: SplitParams, e: EvalParams, seed: int
) -> pd.DataFrame:
    """``split.parquet`` rows (repeat, sample_id, test, fold): repeat-major, ``samples`` order.

    ``samples`` needs ``sample_id, class_id, xmin, xmax, ymin, ymax`` and, with
    ``split.group: scene``, ``scene_id``.
    """
    n = len(samples)
    classes = samples["class_id"].to_numpy()
    w = samples["xmax"].to_numpy(np.float64) - samples["xmin"].to_numpy(np.float64)
    h = samples["ymax"].to_numpy(np.float64) - samples["ymin"].to_numpy(np.float64)
    bins = area_bins(w * h, p.geometry_bins)
    scenes = _scene_ids(samples) if p.group == "scene" else None

    frames = []
    test = np.zeros(n, bool)
    for r in range(e.repeats):
        if r == 0 or e.resplit:
            if scenes is None:
                test = _test_by_sample(classes, bins, p.test_size, seed, r)
            else:
                test = _test_by_scene(classes, bins, scenes, p, seed, r)
        rest = np.flatnonzero(~test)
        if rest.size < p.folds:
            raise InputError(
                f"split.folds={p.folds} but only {rest.size} sample(s) remain outside the test "
                f"split (split.test_size={p.test_size}, {n} samples)"
            )
        fold = np.full(n, -1, np.int32)
        if scenes is None:
            fold[rest] = _folds_by_sample(classes, bins, rest, p.folds, seed, r)
        else:
            fold[rest] = _folds_by_scene(classes, bins, scenes, rest, p, seed, r)
        frames.append(pd.DataFrame({
            "repeat": np.full(n, r, np.int32),
            "sample_id": samples["sample_id"].to_numpy(),
            "test": test.copy(),
            "fold": fold,
        }))
    return pd.concat(frames, ignore_index=True)


def _scene_ids(samples: pd.DataFrame) -> np.ndarray:
    """[N] dense int id of each sample's scene; a missing scene is an error naming the sample."""
    if "scene_id" not in samples:
        raise InputError("split.group: scene needs the samples' scene_id column")
    missing = samples["scene_id"].isna()
    if missing.any():
        raise InputError(
            f"sample {samples['sample_id'][missing].iloc[0]}: no scene_id "
            f"(split.group: scene groups samples by scene)"
        )
    return pd.factorize(samples["scene_id"].astype(str), sort=True)[0].astype(np.int64)


def _log_strata(what: str, strata: np.ndarray, n_leftover: int) -> None:
    n_strata = np.unique(strata[strata >= 0]).size
    log.info(
        "%s: %d strata after merging, %d sample(s) assigned round-robin", what, n_strata, n_leftover
    )


# --- leakage ------------------------------------------------------------------------------------
def leakage(samples: pd.DataFrame, split: pd.DataFrame) -> dict[str, float | int]:
    """What test samples share with training samples, averaged over the (repeat, fold) units.

    ``samples``: ``sample_id, scene_id, image_path``; ``split``: the long split table. A unit's
    training samples are ``~test & fold != f``. Keys: ``units``; ``test_samples``; per unit, the
    number of test samples whose image (``test_image_in_train``) or scene
    (``test_scene_in_train``) some training sample shares, and of test samples with an
    identical-image twin among the other test samples (``test_image_twin_in_test``), each also
    as a share of the test samples (``*_share``).
    """
    missing = [c for c in ("sample_id", "scene_id", "image_path") if c not in samples]
    if missing:
        raise InputError(f"leakage: samples lack column(s) {', '.join(missing)}")
    info = samples.set_index(samples["sample_id"].astype(str))[["scene_id", "image_path"]]
    sp = split.assign(sample_id=split["sample_id"].astype(str))
    unknown = sp.loc[~sp["sample_id"].isin(info.index), "sample_id"]
    if len(unknown):
        raise InputError(f"leakage: split sample {unknown.iloc[0]} is not among the samples")
    sp = sp.join(info, on="sample_id")
    rows = []
    for _, rep in sp.groupby("repeat", sort=True):
        te = rep[rep["test"]]
        twins = int(te["image_path"].duplicated(keep=False).sum())
        for f in sorted(int(v) for v in rep.loc[~rep["test"], "fold"].unique()):
            tr = rep[~rep["test"] & (rep["fold"] != f)]
            rows.append((
                len(te),
                int(te["image_path"].isin(set(tr["image_path"])).sum()),
                int(te["scene_id"].isin(set(tr["scene_id"])).sum()),
                twins,
            ))
    if not rows:
        raise InputError("leakage: the split holds no (repeat, fold) unit")
    a = np.asarray(rows, np.float64)
    n_test = a[:, 0]
    share = np.divide(a, n_test[:, None], out=np.zeros_like(a), where=n_test[:, None] > 0)
    out: dict[str, float | int] = {"units": len(rows), "test_samples": float(n_test.mean())}
    for j, key in enumerate(
        ("test_image_in_train", "test_scene_in_train", "test_image_twin_in_test"), start=1
    ):
        out[key] = float(a[:, j].mean())
        out[f"{key}_share"] = float(share[:, j].mean())
    return out
