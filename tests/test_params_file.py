"""params.yaml survives `dvc exp run -S` unchanged but for the value that was set.

DVC applies ``-S key=value`` by loading params.yaml with ruamel's round-trip loader, rebuilding the
whole tree through OmegaConf and dumping it back (``dvc.utils.hydra.apply_overrides``): every list
is dumped anew in block style, a flow mapping wider than 80 columns is wrapped, a comment after a
flow list moves behind its key. The file is written in the form that comes back as it went in;
these tests run DVC's own code on it (and, slow, one real ``dvc exp run``).
"""

import difflib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from repo_copy import VENV_BIN, commit_all, dvc_env

from tgmatl.embedding.paper import hydra_value

apply_overrides = pytest.importorskip("dvc.utils.hydra").apply_overrides


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value + 0.5
    if isinstance(value, str):
        return value + "_x"
    if isinstance(value, list):
        return value[:1] if len(value) > 1 else value + value
    raise TypeError(value)


def _set(path: Path, key: str, value) -> list[str]:
    """Apply ``-S key=value`` as DVC does; return the changed lines (unified diff, no context)."""
    before = path.read_text().splitlines()
    apply_overrides(str(path), [f"{key}={hydra_value(value)}"])
    after = path.read_text().splitlines()
    return [d for d in difflib.unified_diff(before, after, n=0, lineterm="")
            if d[:1] in "+-" and not d.startswith(("+++", "---"))]


@pytest.fixture
def params_copy(repo_root, tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copyfile(repo_root / "params.yaml", path)
    return path


def test_round_trip_with_an_unchanged_value_rewrites_nothing(params_copy):
    original = params_copy.read_bytes()
    seed = yaml.safe_load(original)["seed"]
    assert _set(params_copy, "seed", seed) == []
    assert params_copy.read_bytes() == original


def test_every_scalar_set_alone_changes_only_its_own_line(params_copy):
    original = params_copy.read_text()
    leaves = [(k, v) for k, v in _leaves(yaml.safe_load(original)) if not isinstance(v, list)]
    assert len(leaves) > 40
    for key, value in leaves:
        params_copy.write_text(original)
        diff = _set(params_copy, key, _changed(value))
        assert len(diff) == 2, (key, diff)
        old, new = diff[0][1:], diff[1][1:]
        name = key.rsplit(".", 1)[-1]
        indent = old[: len(old) - len(old.lstrip())]
        assert old.startswith(f"{indent}{name}:") and new.startswith(f"{indent}{name}:"), key
        # a trailing comment stays, in its column
        assert old.partition("#")[1:] == new.partition("#")[1:], (key, old, new)
        want = yaml.safe_load(original)
        node = want
        for part in key.split(".")[:-1]:
            node = node[part]
        node[name] = _changed(value)
        assert yaml.safe_load(params_copy.read_text()) == want, key


def test_a_list_set_changes_only_its_items(params_copy):
    original = params_copy.read_text()
    lists = [(k, v) for k, v in _leaves(yaml.safe_load(original)) if isinstance(v, list)]
    assert lists
    for key, value in lists:
        params_copy.write_text(original)
        diff = _set(params_copy, key, _changed(value))
        assert diff and all(d[1:].lstrip().startswith("- ") for d in diff), (key, diff)


@pytest.mark.slow
def test_dvc_exp_run_set_param_leaves_the_rest_of_params_yaml(repo_root, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    work = tmp_path / "repo"
    work.mkdir()
    shutil.copyfile(repo_root / "params.yaml", work / "params.yaml")
    original = (work / "params.yaml").read_text()
    # one quick stage that depends on the key set below and records the params it saw
    (work / "dvc.yaml").write_text(
        "stages:\n  seen:\n    cmd: cp params.yaml seen.yaml\n"
        "    params: [sampling.top_pct]\n    outs: [seen.yaml]\n")
    env = dvc_env()
    dvc = [str(VENV_BIN / "dvc")]
    commit_all(work, env, "params", dvc_init=True)
    top = yaml.safe_load(original)["sampling"]["top_pct"]
    new = 0.3 if top != 0.3 else 0.2
    proc = subprocess.run(dvc + ["exp", "run", "-S", f"sampling.top_pct={new}"], cwd=work,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    after = (work / "params.yaml").read_text()
    diff = [d for d in difflib.unified_diff(original.splitlines(), after.splitlines(), n=0,
                                            lineterm="")
            if d[:1] in "+-" and not d.startswith(("+++", "---"))]
    # the one line changes in its value only (a trailing comment stays where it was)
    old_line = next(line for line in original.splitlines() if line.startswith("  top_pct:"))
    assert diff == [f"-{old_line}", "+" + old_line.replace(f": {top}", f": {new}", 1)], diff
    assert (work / "seen.yaml").read_text() == after  # the stage ran on the changed file
