"""The shared split: disjoint, stratified, deterministic, robust to tiny strata and classes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tgmatl.config import SplitParams
from tgmatl.errors import InputError
from tgmatl.splitting import LEFTOVER, area_bins, make_split, merge_strata

P = SplitParams(test_size=0.7, folds=8, geometry_bins=3, group="none")


def samples(counts=(116, 51, 73), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cls = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    n = cls.size
    w = rng.uniform(5, 40, n) + 5 * cls
    h = rng.uniform(5, 40, n)
    return pd.DataFrame(
        {
            "sample_id": [f"s{i:05d}" for i in range(n)],
            "class_id": cls,
            "xmin": 0.0,
            "xmax": w,
            "ymin": 0.0,
            "ymax": h,
        }
    )


def check_valid(split: pd.DataFrame, df: pd.DataFrame, folds: int) -> None:
    assert list(split.columns) == ["sample_id", "test", "fold"]
    assert split["fold"].dtype == np.int32 and split["test"].dtype == bool
    assert split["sample_id"].tolist() == df["sample_id"].tolist()
    # test samples have fold -1; every other sample is the validation sample of exactly one fold
    assert (split.loc[split.test, "fold"] == -1).all()
    assert split.loc[~split.test, "fold"].between(0, folds - 1).all()
    assert set(split.loc[~split.test, "fold"]) == set(range(folds))


def test_awir_sized_split_is_stratified():
    df = samples()
    split = make_split(df, P, seed=0)
    check_valid(split, df, 8)
    n = len(df)
    assert abs(split.test.sum() - 0.7 * n) <= 3
    for c, n_c in df.class_id.value_counts().items():
        in_c = df.class_id == c
        # per class the test share is close to 0.7 (rounding per stratum: <= 3 strata)
        assert abs(split.test[in_c].sum() - 0.7 * n_c) <= 3
        rest = split[in_c & ~split.test]
        sizes = np.bincount(rest.fold, minlength=8)
        # every class spread over the folds: fold sizes within a class differ by little
        assert sizes.max() - sizes.min() <= 3
    sizes = np.bincount(split.fold[~split.test], minlength=8)
    assert sizes.max() - sizes.min() <= 2


def test_deterministic_and_seed_dependent():
    df = samples()
    a = make_split(df, P, seed=0)
    pd.testing.assert_frame_equal(a, make_split(df, P, seed=0))
    assert not a.equals(make_split(df, P, seed=1))


@pytest.mark.parametrize("counts", [(40, 1), (40, 2), (40, 3), (40, 30, 1, 2), (1, 1, 40)])
def test_tiny_classes_do_not_crash(counts):
    df = samples(counts)
    split = make_split(df, P, seed=0)
    check_valid(split, df, 8)
    again = make_split(df, P, seed=0)
    pd.testing.assert_frame_equal(split, again)


def test_one_sample_stratum_does_not_crash():
    """One giant box in a class of ordinary ones: its area bin holds one sample of that class."""
    df = samples((60, 60))
    df.loc[0, "xmax"] = 1000.0
    df.loc[0, "ymax"] = 1000.0
    split = make_split(df, SplitParams(test_size=0.7, folds=8, geometry_bins=10, group="none"), seed=0)
    check_valid(split, df, 8)


def test_too_few_samples_for_the_folds():
    with pytest.raises(InputError, match="split.folds=8 but only"):
        make_split(samples((10, 10)), P, seed=0)


def test_small_class_spread_round_robin_over_folds():
    """A class with fewer non-test samples than folds lands in distinct folds."""
    df = samples((80, 6))
    split = make_split(df, SplitParams(test_size=0.5, folds=4, geometry_bins=2, group="none"), seed=3)
    small = split[(df.class_id == 1) & ~split.test]
    assert 1 <= len(small) < 4 and small.fold.is_unique


def test_area_bins():
    area = np.arange(1.0, 10.0)
    assert area_bins(area, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert area_bins(area, 1).tolist() == [0] * 9


def test_merge_strata_rules():
    cls = np.array([0] * 10 + [1] * 3 + [2] * 1)
    bins = np.array([0, 0, 0, 0, 1, 2, 2, 2, 2, 2] + [0, 1, 2] + [0])
    strata = merge_strata(cls, bins, min_count=4)
    s0 = strata[:10]
    # class 0: bin 1 (1 sample) joins its smaller neighbour bin 0 (4 samples vs 5)
    assert len(set(s0[:5])) == 1 and len(set(s0[5:])) == 1 and s0[0] != s0[5]
    # classes 1 and 2 are too small alone: pooled into one stratum (4 samples)
    assert len(set(strata[10:])) == 1 and strata[10] not in set(s0)
    # a pool below min_count is left over for the deterministic assignment
    strata = merge_strata(cls, bins, min_count=5)
    assert (strata[10:] == LEFTOVER).all()
    assert (strata[:10] >= 0).all()


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"test_size": 1.0}, "split.test_size"),
        ({"test_size": 0.0}, "split.test_size"),
        ({"folds": 1}, "split.folds"),
        ({"geometry_bins": 0}, "split.geometry_bins"),
    ],
)
def test_params_errors_name_the_key(raw, key):
    from tgmatl.params import ParamsError, parse_section

    base = {"test_size": 0.7, "folds": 8, "geometry_bins": 3}
    with pytest.raises(ParamsError, match=key):
        parse_section(SplitParams, {**base, **raw}, "split")
