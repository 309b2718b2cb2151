"""End to end: the whole DVC pipeline on tiny params in a temporary git copy of the repo.

`dvc repro`, then `dvc exp run -S sampling.top_pct=...`: only `select`, `train_tg@*` and `report`
may run again (the `train` stages do not read `sampling.*`), and `dvc metrics diff` must show
the TG-MATL values of table2.json change while the other setups' stay. A change of
`eval.repeats` invalidates `split` (and so everything that reads split.parquet), one of
`eval.alpha` only `report` (checked with `dvc repro --dry`).
"""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from repo_copy import copy_repo

pytestmark = pytest.mark.slow

# Small enough for ~2 minutes on 2 cores: 1 backbone, 16 scenes, 2 repeats × 3 folds, two
# setups besides TG-MATL, a few epochs.
TINY = {
    "demo": {"n_scenes": 16, "width": 800, "height": 600, "n_targets": 60},
    "embed": {"backbones": ["dinov2"]},
    "split": {"test_size": 0.5, "folds": 3},
    "eval": {"repeats": 2},
    "train": {"setups": ["wtl", "matl"], "projection": [32, 16], "epochs": 8, "patience": 3,
              "lr": 1.0e-3, "box_weight_grid": [0.25, 0.75]},
    "heads": {"inner_folds": 3},
}


def _merge(base: dict, changes: dict) -> dict:
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v
    return base


def _stage_scripts(repo: Path) -> list[Path]:
    cmds = json.dumps(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    return sorted({repo / m for m in re.findall(r"stages/\w+\.py", cmds)})


def _run(args: list[str], cwd: Path, env: dict, timeout: int = 600) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_repro_then_sampling_experiment(repo_root, tmp_path):
    missing = [p.name for p in _stage_scripts(repo_root) if not p.is_file()]
    if missing:
        pytest.skip(f"pipeline incomplete: missing stage scripts {missing}")
    work = copy_repo(repo_root, tmp_path / "repo")
    params = _merge(yaml.safe_load((work / "params.yaml").read_text()), TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(work / "src"), "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "2", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("DVC_ROOT", None)
    dvc = [str(venv_bin / "dvc")]
    git = ["git", "-c", "commit.gpgsign=false"]
    _run(git + ["init", "-q"], work, env)
    _run(git + ["add", "-A"], work, env)
    _run(git + ["commit", "-qm", "copy"], work, env)

    out = _run(dvc + ["repro"], work, env, timeout=900)
    assert {"split", "train@dinov2", "train_tg@dinov2", "report"} <= _ran(out)
    table = json.loads((work / "metrics/table2.json").read_text())
    assert set(table["dinov2"]) == {"wtl", "matl", "tg_matl"}
    claims = json.loads((work / "metrics/claims.json").read_text())
    assert claims["dinov2"]["tg_matl_acc_above_matl"]["verdict"] in (
        "holds", "contradicted", "inconclusive")
    comparisons = json.loads((work / "metrics/comparisons.json").read_text())
    assert set(comparisons["dinov2"]) == {"vs_wtl", "vs_matl"}
    for name in ("metrics.png", "curves.png", "embeddings_class.png"):
        assert (work / "plots" / name).stat().st_size > 0
    assert "TG-MATL" in (work / "report.md").read_text()
    # outputs get the plain open()/mkdir modes under the umask (never tempfile's private 0600)
    private = [str(p.relative_to(work)) for top in ("data", "results", "models", "plots",
                                                     "metrics", "report.md")
               for p in [work / top, *(work / top).rglob("*")]
               if p.exists() and stat.S_IMODE(p.stat().st_mode) in (0o600, 0o700)]
    assert private == [], private[:10]
    _run(git + ["add", "-A"], work, env)
    _run(git + ["commit", "-qm", "baseline"], work, env)

    # which stages a change of eval.* invalidates (a dry run: nothing runs, so stages further
    # down show up only once split.parquet really changes; they all depend on it)
    for key, value, expect in (("repeats", 3, {"split", "report"}), ("alpha", 0.1, {"report"})):
        changed = yaml.safe_load((work / "params.yaml").read_text())
        changed["eval"][key] = value
        (work / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        assert _ran(_run(dvc + ["repro", "--dry"], work, env)) == expect, key
        _run(git + ["checkout", "params.yaml"], work, env)
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    for name in ("score", "train", "train_tg", "report"):
        deps = stages[name].get("deps") or stages[name]["do"]["deps"]
        assert "data/split.parquet" in deps, name

    top = 0.5 if params["sampling"]["top_pct"] != 0.5 else 0.3
    out = _run(dvc + ["exp", "run", "-S", f"sampling.top_pct={top}"], work, env, timeout=600)
    assert _ran(out) == {"select", "train_tg@dinov2", "report"}, out[-3000:]

    diff = json.loads(_run(dvc + ["metrics", "diff", "--json"], work, env))
    changed = {k for entries in diff.values() for k in entries}
    assert any(k.startswith("dinov2.tg_matl.") for k in changed), diff
    assert not any(k.startswith(("dinov2.cltl.", "dinov2.matl.", "dinov2.wtl."))
                   for k in changed), diff
