"""The shared split: disjoint, stratified, deterministic, robust to tiny strata and classes;
repeats, whole-scene grouping and the leakage report."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tgmatl.config import EvalParams, MarginParams, SplitParams
from tgmatl.errors import InputError
from tgmatl.method.splitting import (
    LEFTOVER,
    area_bins,
    assign_groups,
    leakage,
    make_split,
    merge_strata,
)
from tgmatl.planted import planted_survey

P = SplitParams(test_size=0.7, folds=8, geometry_bins=3, group="none")
PS = SplitParams(test_size=0.7, folds=8, geometry_bins=3, group="scene")


MARGIN = MarginParams(accuracy=0.02, r2=0.03, class_map_at_r=0.02, box_map_at_r=0.02)


def ev(repeats: int, resplit: bool) -> EvalParams:
    return EvalParams(repeats=repeats, resplit=resplit, alpha=0.05, retrieval_queries=2000,
                      margin=MARGIN)


E1 = ev(1, True)


def split1(df: pd.DataFrame, p: SplitParams = P, seed: int = 0) -> pd.DataFrame:
    """One repeat, without the repeat column (the single-split checks below)."""
    sp = make_split(df, p, E1, seed)
    assert (sp["repeat"] == 0).all() and sp["repeat"].dtype == np.int32
    return sp.drop(columns="repeat")


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
    split = split1(df)
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
    a = split1(df)
    pd.testing.assert_frame_equal(a, split1(df))
    assert not a.equals(split1(df, seed=1))


@pytest.mark.parametrize("counts", [(40, 1), (40, 2), (40, 3), (40, 30, 1, 2), (1, 1, 40)])
def test_tiny_classes_do_not_crash(counts):
    df = samples(counts)
    split = split1(df)
    check_valid(split, df, 8)
    again = split1(df)
    pd.testing.assert_frame_equal(split, again)


def test_one_sample_stratum_does_not_crash():
    """One giant box in a class of ordinary ones: its area bin holds one sample of that class."""
    df = samples((60, 60))
    df.loc[0, "xmax"] = 1000.0
    df.loc[0, "ymax"] = 1000.0
    split = split1(df, SplitParams(test_size=0.7, folds=8, geometry_bins=10, group="none"))
    check_valid(split, df, 8)


def test_too_few_samples_for_the_folds():
    with pytest.raises(InputError, match="split.folds=8 but only"):
        split1(samples((10, 10)))


def test_small_class_spread_round_robin_over_folds():
    """A class with fewer non-test samples than folds lands in distinct folds."""
    df = samples((80, 6))
    split = split1(df, SplitParams(test_size=0.5, folds=4, geometry_bins=2, group="none"), seed=3)
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
        ({"group": "image"}, "split.group"),
    ],
)
def test_params_errors_name_the_key(raw, key):
    from tgmatl.params import ParamsError, parse_section

    base = {"test_size": 0.7, "folds": 8, "geometry_bins": 3, "group": "none"}
    with pytest.raises(ParamsError, match=key):
        parse_section(SplitParams, {**base, **raw}, "split")


# --- repeats ------------------------------------------------------------------------------------
def test_long_table_one_row_per_repeat_and_sample():
    df = samples()
    sp = make_split(df, P, ev(3, True), 0)
    assert list(sp.columns) == ["repeat", "sample_id", "test", "fold"]
    assert sp["repeat"].dtype == np.int32 and sp["fold"].dtype == np.int32
    assert sp["repeat"].tolist() == [r for r in range(3) for _ in range(len(df))]
    for r in range(3):
        check_valid(sp[sp.repeat == r].drop(columns="repeat").reset_index(drop=True), df, 8)


@pytest.mark.parametrize("p", [P, PS])
def test_resplit_redraws_the_test_split_and_keeps_earlier_repeats(p):
    df = planted_survey(240, n_scenes=96, seed=1).samples
    r3 = make_split(df, p, ev(3, True), 0)
    tests = [r3[r3.repeat == r].test.to_numpy() for r in range(3)]
    assert not np.array_equal(tests[0], tests[1]) and not np.array_equal(tests[1], tests[2])
    # adding repeats keeps the earlier ones: repeat 0 of R=1, repeats 0-1 of R=2
    pd.testing.assert_frame_equal(split1(df, p), r3[r3.repeat == 0].drop(columns="repeat"))
    r2 = make_split(df, p, ev(2, True), 0)
    pd.testing.assert_frame_equal(r2, r3[r3.repeat < 2].reset_index(drop=True))


@pytest.mark.parametrize("p", [P, PS])
def test_fixed_test_split_with_redrawn_folds(p):
    df = planted_survey(240, n_scenes=96, seed=1).samples
    sp = make_split(df, p, ev(3, False), 0)
    reps = [sp[sp.repeat == r].reset_index(drop=True) for r in range(3)]
    for rep in reps[1:]:
        assert rep.test.equals(reps[0].test)
        assert not rep.fold.equals(reps[0].fold)
    # repeat 0 is the same whether or not later repeats redraw the test split
    resplit = make_split(df, p, ev(1, True), 0)
    pd.testing.assert_frame_equal(resplit, reps[0])


# --- whole scenes -------------------------------------------------------------------------------
def check_scenes_whole(sp: pd.DataFrame, df: pd.DataFrame, folds: int) -> None:
    for _, rep in sp.groupby("repeat"):
        # one role per scene: test, or a single fold
        role = pd.Series(np.where(rep.test, -1, rep.fold)).groupby(df.scene_id.to_numpy())
        assert (role.nunique() == 1).all()
        assert set(rep.fold[~rep.test]) == set(range(folds))  # no fold is empty
        assert (rep.fold[rep.test] == -1).all()


def test_scene_split_keeps_scenes_whole_and_balanced():
    df = planted_survey(240, n_scenes=96, seed=2).samples
    sp = make_split(df, PS, ev(4, True), 0)
    check_scenes_whole(sp, df, 8)
    for _, rep in sp.groupby("repeat"):
        assert abs(rep.test.mean() - 0.7) <= 0.03
        sizes = np.bincount(rep.fold[~rep.test], minlength=8)
        assert sizes.min() >= 4 and sizes.max() <= 14, sizes
        for c in range(3):  # every class on both sides, near its overall share
            in_c = df.class_id.to_numpy() == c
            assert abs(rep.test[in_c].mean() - 0.7) <= 0.1
    pd.testing.assert_frame_equal(
        sp, make_split(df, PS, ev(4, True), 0))
    assert not sp.equals(make_split(df, PS, ev(4, True), 1))


def test_scene_split_on_single_sample_scenes_and_tiny_classes():
    df = samples((40, 30, 2))
    df["scene_id"] = [f"sc{i // 2}" for i in range(len(df))]  # two samples a scene
    df.loc[:9, "scene_id"] = [f"alone{i}" for i in range(10)]
    sp = make_split(df, SplitParams(0.5, 4, 3, "scene"), ev(2, True), 3)
    check_scenes_whole(sp, df, 4)


def test_too_few_scenes_for_the_folds():
    df = samples()
    df["scene_id"] = [f"sc{i % 8}" for i in range(len(df))]  # 8 scenes: 8 folds + test need 9
    with pytest.raises(InputError, match=r"split\.folds=8 but the samples hold only 8 scene"):
        make_split(df, PS, E1, 0)


def test_few_scenes_keep_one_per_fold_outside_the_test_split(caplog):
    df = samples()
    df["scene_id"] = [f"sc{i % 12}" for i in range(len(df))]  # 12 equal scenes
    sp = make_split(df, PS, ev(3, True), 0)
    check_scenes_whole(sp, df, 8)
    # 8 scenes stay outside the test split: 4 of 12 test scenes, a share of 1/3, not 0.7
    assert np.allclose(sp.groupby("repeat").test.mean(), 4 / 12, atol=0.01)
    assert "test split (repeat 0): 4 of 12 scenes" in caplog.text


def test_scene_split_needs_scene_ids():
    df = samples()
    with pytest.raises(InputError, match="scene_id"):
        make_split(df, PS, E1, 0)
    df["scene_id"] = "a"
    df.loc[5, "scene_id"] = None
    with pytest.raises(InputError, match="sample s00005: no scene_id"):
        make_split(df, PS, E1, 0)


def test_assign_groups_balances_and_fills_every_part():
    rng = np.random.default_rng(0)
    # 12 identical groups of 2 strata into 3 equal parts: a perfect split exists (4 each)
    counts = np.tile([[2.0, 1.0]], (12, 1))
    part = assign_groups(counts, [1 / 3] * 3, rng)
    assert np.bincount(part, minlength=3).tolist() == [4, 4, 4]
    # unequal shares: 70 % of 20 unit groups
    part = assign_groups(np.ones((20, 1)), [0.3, 0.7], rng)
    assert np.bincount(part).tolist() == [6, 14]
    # a minimum number of groups overrides the share
    part = assign_groups(np.ones((20, 1)), [0.1, 0.9], rng, min_groups=[5, 1])
    assert np.bincount(part).tolist() == [5, 15]
    # one huge group: the other parts still get a group each
    counts = np.array([[50.0]] + [[1.0]] * 5)
    part = assign_groups(counts, [0.5, 0.25, 0.25], np.random.default_rng(1))
    assert set(part) == {0, 1, 2}
    a = assign_groups(np.arange(30.0).reshape(15, 2), [0.5, 0.5], np.random.default_rng(7))
    b = assign_groups(np.arange(30.0).reshape(15, 2), [0.5, 0.5], np.random.default_rng(7))
    assert np.array_equal(a, b)


# --- leakage ------------------------------------------------------------------------------------
def test_leakage_hand_built():
    df = pd.DataFrame({
        "sample_id": ["a", "b", "c", "d", "e", "f"],
        "scene_id": ["S1", "S1", "S1", "S2", "S2", "S3"],
        "image_path": ["i1", "i1", "i2", "i3", "i3", "i4"],
    })
    # repeat 0: test a, d, e; folds: b -> 0, c -> 1, f -> 1
    sp = pd.DataFrame({
        "repeat": np.int32(0),
        "sample_id": df.sample_id,
        "test": [True, False, False, True, True, False],
        "fold": np.array([-1, 0, 1, -1, -1, 1], np.int32),
    })
    out = leakage(df, sp)
    # fold 0 trains on c, f: a shares scene S1 (not its image i1): image 0, scene 1
    # fold 1 trains on b: a shares image i1 and scene S1: image 1, scene 1
    # d and e are image twins inside the test set (2), in every unit
    assert out == {
        "units": 2, "test_samples": 3.0,
        "test_image_in_train": 0.5, "test_image_in_train_share": pytest.approx(0.5 / 3),
        "test_scene_in_train": 1.0, "test_scene_in_train_share": pytest.approx(1 / 3),
        "test_image_twin_in_test": 2.0, "test_image_twin_in_test_share": pytest.approx(2 / 3),
    }


def test_scene_split_leaks_no_scene_sample_split_does():
    df = planted_survey(240, n_scenes=96, shared_image_fraction=0.3, seed=0).samples
    e = ev(2, True)
    scene = leakage(df, make_split(df, PS, e, 0))
    none = leakage(df, make_split(df, P, e, 0))
    assert scene["units"] == none["units"] == 16
    assert scene["test_scene_in_train"] == scene["test_image_in_train"] == 0.0
    assert none["test_scene_in_train"] > 50 and none["test_image_in_train"] > 5


# --- stage --------------------------------------------------------------------------------------
def test_stage_reads_split_and_eval(tmp_path):
    from tgmatl.io import write_parquet

    path = Path(__file__).resolve().parents[2] / "stages" / "split.py"
    spec = importlib.util.spec_from_file_location("split_stage", path)
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    df = planted_survey(240, n_scenes=96, seed=0).samples
    write_parquet(tmp_path / "samples.parquet", df)
    params = {"seed": 0,
              "split": {"test_size": 0.7, "folds": 8, "geometry_bins": 3, "group": "scene"},
              "eval": {"repeats": 2, "resplit": False, "alpha": 0.05,
                       "retrieval_queries": 2000,
                       "margin": {"accuracy": 0.02, "r2": 0.03, "class_map_at_r": 0.02,
                                  "box_map_at_r": 0.02}}}
    args = argparse.Namespace(samples=str(tmp_path / "samples.parquet"),
                              out=str(tmp_path / "split.parquet"))
    stage.main(args, params)
    sp = pd.read_parquet(tmp_path / "split.parquet")
    assert sp.repeat.tolist() == [0] * 240 + [1] * 240
    check_scenes_whole(sp, df, 8)
