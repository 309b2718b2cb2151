"""Selection masks, Eqs. 6-13: counts, ranks, ties, draws, options and params."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgmatl.config import SamplingParams
from tgmatl.method.selection import (
    class_counts,
    derive_seed,
    exact_floor,
    select_folds,
    select_mask,
)
from tgmatl.params import ParamsError, parse_section


@pytest.mark.parametrize(
    "frac, n, want",
    [
        (0.3, 10, 3),
        (0.1, 30, 3),
        (0.7, 10, 7),
        (0.29, 100, 29),
        (0.57, 100, 57),
        (1 / 6, 6, 1),
        (1 / 3, 3, 1),
        (0.1, 9, 0),
        (0.35, 2, 0),
        (0.999, 1000, 999),
    ],
)
def test_exact_floor(frac, n, want):
    assert exact_floor(frac, n) == want


def test_float_floor_would_be_wrong():
    """Why exact_floor exists: binary floating point misses these."""
    import math

    assert math.floor(0.29 * 100) == 28 and math.floor(0.57 * 100) == 56


@pytest.mark.parametrize(
    "n_c, top, rand, want",
    [
        (30, 0.1, 0.1, (3, 3)),
        (10, 1.0, 0.5, (10, 0)),  # top 100 %: nothing left to draw
        (10, 0.3, 0.0, (3, 0)),
        (10, 0.7, 0.7, (7, 3)),  # top + random > 1: capped by |R_c|
        (1, 0.1, 0.1, (1, 0)),  # tiny class: still one top sample
        (2, 0.1, 0.5, (1, 1)),
        (3, 0.5, 0.34, (1, 1)),
        (0, 0.5, 0.5, (0, 0)),
    ],
)
def test_class_counts(n_c, top, rand, want):
    assert class_counts(n_c, top, rand) == want


def _scores_classes(seed=0, sizes=(30, 12, 1, 2, 7)):
    rng = np.random.default_rng(seed)
    classes = np.concatenate([np.full(s, c) for c, s in enumerate(sizes)])
    perm = rng.permutation(classes.size)
    return rng.random(classes.size), classes[perm]


@pytest.mark.parametrize("random", ["random", "next"])
@pytest.mark.parametrize("top, rand", [(0.1, 0.1), (1.0, 0.0), (0.2, 0.0), (0.5, 0.9), (0.3, 0.3)])
def test_counts_per_class(random, top, rand):
    scores, classes = _scores_classes()
    mask = select_mask(scores, classes, top, rand, random, seed=1)
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        n_top, n_rand = class_counts(members.size, top, rand)
        # a boolean mask cannot hold an index twice: top and random never overlap when the
        # count is exactly n_top + n_rand
        assert mask[members].sum() == n_top + n_rand
        best = members[np.argsort(-scores[members], kind="stable")][:n_top]
        assert mask[best].all()


def test_top_only_picks_highest_and_breaks_ties_by_index():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.5])
    classes = np.zeros(6, int)
    # n_top = 3: both 0.9 (indices 1, 3), then the first 0.5 (index 0)
    mask = select_mask(scores, classes, 0.5, 0.0)
    assert np.flatnonzero(mask).tolist() == [0, 1, 3]
    # next ranks: 0.5s at indices 2 then 5
    mask = select_mask(scores, classes, 0.5, 1 / 6, random="next")
    assert np.flatnonzero(mask).tolist() == [0, 1, 2, 3]
    mask = select_mask(scores, classes, 0.5, 2 / 6, random="next")
    assert np.flatnonzero(mask).tolist() == [0, 1, 2, 3, 5]


def test_random_draws_only_from_the_rest_and_are_seeded():
    scores, classes = _scores_classes(sizes=(40,))
    top = select_mask(scores, classes, 0.25, 0.0)
    a = select_mask(scores, classes, 0.25, 0.25, seed=5)
    b = select_mask(scores, classes, 0.25, 0.25, seed=5)
    c = select_mask(scores, classes, 0.25, 0.25, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(a[top]) and a.sum() == 20
    nxt = select_mask(scores, classes, 0.25, 0.25, random="next")
    assert not np.array_equal(a, nxt)  # random is not "the next ranks"


def test_random_draw_is_uniform_over_the_rest():
    scores = np.arange(10, dtype=float)[::-1]  # index 0 is the top sample
    classes = np.zeros(10, int)
    hits = np.zeros(10)
    for seed in range(2000):
        hits += select_mask(scores, classes, 0.1, 0.3, seed=seed)
    assert hits[0] == 2000
    # each of the 9 others is drawn with probability 3/9
    np.testing.assert_allclose(hits[1:] / 2000, 1 / 3, atol=0.05)


def test_batch_scope_usage():
    """scope batch: the training code calls select_mask on each mini-batch; counts then follow
    the class sizes inside the batch."""
    scores, classes = _scores_classes(sizes=(30, 12))
    batch = np.arange(0, 42, 3)  # 14 samples
    m = select_mask(scores[batch], classes[batch], 0.5, 0.0)
    for c in (0, 1):
        n_c = int(np.sum(classes[batch] == c))
        assert m[classes[batch] == c].sum() == max(1, n_c // 2)


def test_argument_errors():
    s, c = np.zeros(3), np.zeros(3)
    with pytest.raises(ValueError, match="top_pct"):
        select_mask(s, c, 0.0, 0.1)
    with pytest.raises(ValueError, match="random_pct"):
        select_mask(s, c, 0.1, -0.1)
    with pytest.raises(ValueError, match="random"):
        select_mask(s, c, 0.1, 0.1, random="draw")
    with pytest.raises(ValueError, match="non-finite"):
        select_mask(np.array([0.0, np.nan, 1.0]), c, 0.1, 0.1)
    with pytest.raises(ValueError, match="length"):
        select_mask(s, np.zeros(2), 0.1, 0.1)


def _sampling(**kw):
    raw = {"top_pct": 0.1, "random_pct": 0.1, "random": "random", "scope": "dataset"}
    raw["negatives"] = "all"
    raw.update(kw)
    return parse_section(SamplingParams, raw, "sampling")


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"top_pct": 0.0}, "sampling.top_pct"),
        ({"top_pct": -0.2}, "sampling.top_pct"),
        ({"top_pct": 1.01}, "sampling.top_pct"),
        ({"random_pct": -0.1}, "sampling.random_pct"),
        ({"random": "draw"}, "sampling.random"),
        ({"scope": "epoch"}, "sampling.scope"),
        ({"negatives": "none"}, "sampling.negatives"),
    ],
)
def test_params_out_of_range_name_the_key(kw, key):
    with pytest.raises(ParamsError, match=key):
        _sampling(**kw)


def test_params_sum_above_one_allowed_and_capped():
    p = _sampling(top_pct=0.8, random_pct=0.7)
    scores, classes = _scores_classes()
    assert select_mask(scores, classes, p.top_pct, p.random_pct).all()


def test_derive_seed():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert len({derive_seed(0, f) for f in range(8)}) == 8
    assert derive_seed(1, 0) != derive_seed(0, 1)


def test_select_folds():
    rng = np.random.default_rng(0)
    rows = []
    for rep in range(2):
        for fold in range(3):
            for i in range(40):
                role = "test" if i < 10 else ("val" if (i + rep) % 3 == fold else "train")
                rows.append((rep, fold, f"s{i:03d}", role, i % 2, rng.random()))
    scores = pd.DataFrame(rows, columns=["repeat", "fold", "sample_id", "role", "class_id",
                                         "score"])
    p = _sampling(top_pct=0.2, random_pct=0.3)
    masks = select_folds(scores, p, seed=0)
    assert list(masks.columns) == ["repeat", "fold", "sample_id", "mask"]
    assert masks["fold"].dtype == np.int32 and masks["mask"].dtype == bool
    train = scores[scores.role == "train"]
    assert len(masks) == len(train)
    pairs = set(zip(masks.repeat, masks.fold, masks.sample_id, strict=True))
    assert pairs == set(zip(train.repeat, train.fold, train.sample_id, strict=True))
    for (rep, fold), part in masks.groupby(["repeat", "fold"]):
        src = train[(train.repeat == rep) & (train.fold == fold)].sort_values("sample_id")
        want = select_mask(src.score, src.class_id, 0.2, 0.3, seed=derive_seed(0, rep, fold))
        np.testing.assert_array_equal(part["mask"].to_numpy(), want)
    pd.testing.assert_frame_equal(masks, select_folds(scores, p, seed=0))
