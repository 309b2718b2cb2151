"""The scale benchmark's stage commands are dvc.yaml's, resolved as DVC would resolve them."""

import importlib.util

import numpy as np
import pytest
import yaml


@pytest.fixture(scope="module")
def bench(repo_root):
    spec = importlib.util.spec_from_file_location("bench_scale",
                                                  repo_root / "benchmarks" / "bench_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_commands_cover_every_stage_with_params_filled(bench, repo_root):
    base = yaml.safe_load((repo_root / "params.yaml").read_text())
    params = bench.bench_params(base, 5000, "mae", ["wtl"], epochs=2, repeats=1, per_scene=4)
    assert params["demo"]["n_targets"] == 5000 and params["demo"]["targets_per_scene"] == 4
    assert params["train"]["patience"] > params["train"]["epochs"] == 2  # no early stop
    dvc_yaml = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    commands = dict(bench.stage_commands(dvc_yaml, params))
    expected = {name if "foreach" not in stage else f"{name}@mae"
                for name, stage in dvc_yaml["stages"].items()}
    assert set(commands) == expected
    assert not any("${" in cmd for cmd in commands.values())
    assert "--backbone mae" in commands["train@mae"]
    assert f"--root {base['data']['root']}" in commands["tile"]


def test_exponent_of_a_power_law(bench):
    ns = [1000, 2000, 4000, 8000]
    assert bench.exponent(ns, [3e-4 * n**1.5 for n in ns]) == pytest.approx(1.5)
    assert np.isnan(bench.exponent([1000], [1.0]))
