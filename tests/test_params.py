"""The params mechanism: typed, frozen sections that reject bad keys with the key's name."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from tgmatl import config
from tgmatl.params import ParamsError, load_params, parse_section, read_section, read_seed

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {
    "demo": config.DemoParams,
    "data": config.DataParams,
    "tile": config.TileParams,
    "isolate": config.IsolateParams,
    "embed": config.EmbedParams,
    "split": config.SplitParams,
    "eval": config.EvalParams,
    "geometry": config.GeometryParams,
    "mi": config.MIParams,
    "sampling": config.SamplingParams,
    "train": config.TrainParams,
    "heads": config.HeadsParams,
}


@pytest.fixture()
def params() -> dict:
    return load_params(REPO / "params.yaml")


def test_every_section_of_the_shipped_params_parses(params):
    for key, cls in SECTIONS.items():
        section = read_section(cls, params, key)
        assert dataclasses.is_dataclass(section)
    for name in params["embed"]["backbones"]:
        assert config.backbone_section(params, name).family in ("dinov2", "mae", "clip",
                                                                 "classical")
    assert read_seed(params) == params["seed"]


def test_sections_are_frozen(params):
    sampling = read_section(config.SamplingParams, params, "sampling")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sampling.top_pct = 0.5  # type: ignore[misc]


def test_unknown_key_is_named(params):
    params["sampling"]["top_pctt"] = 0.2
    with pytest.raises(ParamsError, match=r"sampling\.top_pctt"):
        read_section(config.SamplingParams, params, "sampling")


def test_missing_key_is_named(params):
    del params["train"]["margin"]
    with pytest.raises(ParamsError, match=r"train\.margin: missing"):
        read_section(config.TrainParams, params, "train")


@pytest.mark.parametrize(
    ("section", "key", "value", "pattern"),
    [
        ("sampling", "top_pct", 0.0, r"sampling\.top_pct: 0\.0 out of range, must be > 0"),
        ("sampling", "top_pct", 1.5, r"sampling\.top_pct: 1\.5 out of range, must be <= 1"),
        ("sampling", "random_pct", -0.1, r"sampling\.random_pct: -0\.1 out of range"),
        ("sampling", "random", "shuffle", r"sampling\.random: 'shuffle' is not one of random\|"),
        ("tile", "edge", "wrap", r"tile\.edge: 'wrap' is not one of pad\|shift\|drop"),
        ("data", "format", "kitti", r"data\.format: 'kitti' is not one of"),
        ("train", "epochs", 2.5, r"train\.epochs: expected an integer"),
        ("train", "epochs", True, r"train\.epochs: expected an integer"),
        ("train", "projection", [512, 0], r"train\.projection: 0 out of range"),
        ("split", "folds", 1, r"split\.folds: 1 out of range, must be >= 2"),
        ("embed", "backbones", [], r"embed\.backbones: needs at least 1"),
        ("eval", "repeats", 0, r"eval\.repeats: 0 out of range, must be >= 1"),
        ("eval", "alpha", 0.5, r"eval\.alpha: 0\.5 out of range"),
        ("heads", "kind", "svm", r"heads\.kind: 'svm' is not one of probe\|mlp"),
        ("heads", "l2_grid", [1.0, 0.0], r"heads\.l2_grid: 0\.0 out of range"),
        ("train", "setups", ["wtl", "tg_matl"], r"train\.setups\[1\]: 'tg_matl' is not one of"),
        ("train", "setups", ["wtl", "wtl"], r"train\.setups: duplicate setup"),
        ("split", "group", "tile", r"split\.group: 'tile' is not one of scene\|none"),
    ],
)
def test_bad_values_are_named(params, section, key, value, pattern):
    params[section][key] = value
    with pytest.raises(ParamsError, match=pattern):
        read_section(SECTIONS[section], params, section)


def test_nested_section_errors_carry_the_full_key(params):
    params["geometry"]["box_label"]["k"] = 1
    with pytest.raises(ParamsError, match=r"geometry\.box_label\.k: 1 out of range"):
        read_section(config.GeometryParams, params, "geometry")


def test_eval_margin_is_positive_per_known_metric(params):
    params["eval"]["margin"]["r2"] = 0.0
    with pytest.raises(ParamsError, match=r"eval\.margin\.r2: 0\.0 out of range, must be > 0"):
        read_section(config.EvalParams, params, "eval")
    params["eval"]["margin"]["r2"] = 0.03
    params["eval"]["margin"]["f1"] = 0.02
    with pytest.raises(ParamsError, match=r"unknown key\(s\) eval\.margin\.f1"):
        read_section(config.EvalParams, params, "eval")


def test_cross_field_rule(params):
    params["demo"]["class_weights"] = [1.0, 2.0]
    with pytest.raises(ParamsError, match=r"demo\.class_weights"):
        read_section(config.DemoParams, params, "demo")


def test_missing_section_and_bad_seed(params):
    del params["mi"]
    with pytest.raises(ParamsError, match=r"mi: section missing"):
        read_section(config.MIParams, params, "mi")
    with pytest.raises(ParamsError, match=r"seed"):
        read_seed({"seed": -1})
    with pytest.raises(ParamsError, match=r"backbones\.vit_huge"):
        config.backbone_section(params, "vit_huge")


def test_load_params_errors_name_the_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match=r"bad\.yaml: top level must be a mapping"):
        load_params(bad)


def test_parse_section_rejects_non_mapping():
    with pytest.raises(ParamsError, match=r"mi: expected a mapping"):
        parse_section(config.MIParams, [1, 2], "mi")


def test_shipped_params_round_trip_through_yaml(params):
    # the file stays plain YAML that `dvc exp run -S` can rewrite
    assert yaml.safe_load(yaml.safe_dump(params)) == params
