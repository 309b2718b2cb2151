"""End to end: the whole DVC pipeline on tiny params in a temporary git copy of the repo.

`dvc repro`, then `dvc exp run -S sampling.top_pct=...`: only `select`, `train_tg@*` and `report`
may run again (the `train` stages do not read `sampling.*`), and `dvc metrics diff` must show
the TG-MATL values of table2.json change while the other setups' stay. A change of
`eval.repeats` invalidates `split` (and so everything that reads split.parquet), one of
`eval.alpha` only `report` (checked with `dvc repro --dry`).

The sweep across machines of the README, with two clones for two machines: the baseline goes to
a bare git repo and a local-folder DVC remote; each clone (`git clone` + `dvc pull`, up to date
without recomputing) runs one grid point and `dvc exp push`es it; the first repo `dvc exp pull`s
both and `scripts/sweep_table.py` reads them from `dvc exp show --json`.
"""

import importlib.util
import json
import re
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from repo_copy import GIT, VENV_BIN, commit_all, copy_repo, dvc_env

pytestmark = pytest.mark.slow

# Small enough for ~2 minutes on 2 cores: 1 backbone, 16 scenes, 2 repeats × 3 folds, two
# setups besides TG-MATL, a few epochs.
TINY = {
    "demo": {"targets_per_scene": 3.75, "width": 800, "height": 600, "n_targets": 60},
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


def _sweep_table(repo_root: Path):
    spec = importlib.util.spec_from_file_location("sweep_table",
                                                  repo_root / "scripts/sweep_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repro_then_sampling_experiment(repo_root, tmp_path):
    missing = [p.name for p in _stage_scripts(repo_root) if not p.is_file()]
    if missing:
        pytest.skip(f"pipeline incomplete: missing stage scripts {missing}")
    work = copy_repo(repo_root, tmp_path / "repo")
    params = _merge(yaml.safe_load((work / "params.yaml").read_text()), TINY)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = dvc_env(work)
    dvc = [str(VENV_BIN / "dvc")]
    commit_all(work, env)

    out = _run(dvc + ["repro"], work, env, timeout=900)
    assert {"split", "train@dinov2", "train_tg@dinov2", "report"} <= _ran(out)
    table = json.loads((work / "metrics/table2.json").read_text())
    assert set(table["dinov2"]) == {"wtl", "matl", "tg_matl"}
    claims = json.loads((work / "metrics/claims.json").read_text())
    assert claims["dinov2"]["tg_matl_acc_above_matl"]["verdict"] in (
        "holds", "contradicted", "inconclusive")
    comparisons = json.loads((work / "metrics/comparisons.json").read_text())
    assert set(comparisons["dinov2"]) == {"vs_wtl", "vs_matl", "mde"}
    assert "aa_control" in claims["dinov2"]
    for name in ("metrics.png", "curves.png", "embeddings_class.png"):
        assert (work / "plots" / name).stat().st_size > 0
    assert "TG-MATL" in (work / "report.md").read_text()
    # outputs get the plain open()/mkdir modes under the umask (never tempfile's private 0600)
    private = [str(p.relative_to(work)) for top in ("data", "results", "models", "plots",
                                                     "metrics", "report.md")
               for p in [work / top, *(work / top).rglob("*")]
               if p.exists() and stat.S_IMODE(p.stat().st_mode) in (0o600, 0o700)]
    assert private == [], private[:10]
    _run(GIT + ["add", "-A"], work, env)
    _run(GIT + ["commit", "-qm", "baseline"], work, env)

    # which stages a change of eval.* invalidates (a dry run: nothing runs, so stages further
    # down show up only once split.parquet really changes; they all depend on it)
    for key, value, expect in (("repeats", 3, {"split", "report"}), ("alpha", 0.1, {"report"})):
        changed = yaml.safe_load((work / "params.yaml").read_text())
        changed["eval"][key] = value
        (work / "params.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        assert _ran(_run(dvc + ["repro", "--dry"], work, env)) == expect, key
        _run(GIT + ["checkout", "params.yaml"], work, env)
    stages = yaml.safe_load((work / "dvc.yaml").read_text())["stages"]
    for name in ("score", "train", "train_tg", "report"):
        deps = stages[name].get("deps") or stages[name]["do"]["deps"]
        assert "data/split.parquet" in deps, name

    # the shared remotes: a bare git repo and a local-folder DVC remote (dvc push: the clones
    # pull the baseline's outputs instead of recomputing them)
    _run(GIT + ["init", "-q", "--bare", str(tmp_path / "origin.git")], tmp_path, env)
    _run(dvc + ["remote", "add", "-d", "shared", str(tmp_path / "dvc-store")], work, env)
    _run(GIT + ["commit", "-qam", "shared DVC remote"], work, env)
    _run(GIT + ["remote", "add", "origin", str(tmp_path / "origin.git")], work, env)
    _run(GIT + ["push", "-q", "origin", "HEAD"], work, env)
    _run(dvc + ["push"], work, env)

    # two machines at once, one grid point each: clone the shared repos, pull the baseline's
    # outputs, run, push the experiment (with its outputs); that only select, train_tg and
    # report run shows the pull left nothing upstream to recompute
    top = 0.5 if params["sampling"]["top_pct"] != 0.5 else 0.3
    rand = 0.2 if params["sampling"]["random_pct"] != 0.2 else 0.05
    start = (float(params["sampling"]["top_pct"]), float(params["sampling"]["random_pct"]))
    machines = {"a-top": (f"sampling.top_pct={top}", (float(top), start[1])),
                "b-rand": (f"sampling.random_pct={rand}", (start[0], float(rand)))}

    def machine(name: str) -> str:
        clone, cenv = tmp_path / name, dvc_env(tmp_path / name)
        _run(GIT + ["clone", "-q", str(tmp_path / "origin.git"), name], tmp_path, cenv)
        _run(dvc + ["pull"], clone, cenv)
        out = _run(dvc + ["exp", "run", "-n", name, "-S", machines[name][0]], clone, cenv,
                   timeout=600)
        _run(dvc + ["exp", "push", "origin", name], clone, cenv)
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = dict(zip(machines, pool.map(machine, machines), strict=True))
    computed = {}
    for name, out in outs.items():
        assert _ran(out) == {"select", "train_tg@dinov2", "report"}, (name, out[-3000:])
        table = json.loads((tmp_path / name / "metrics/table2.json").read_text())
        computed[machines[name][1]] = table["dinov2"]["tg_matl"]

    diff = json.loads(_run(dvc + ["metrics", "diff", "--json"], tmp_path / "a-top",
                           dvc_env(tmp_path / "a-top")))
    changed = {k for entries in diff.values() for k in entries}
    assert any(k.startswith("dinov2.tg_matl.") for k in changed), diff
    assert not any(k.startswith(("dinov2.cltl.", "dinov2.matl.", "dinov2.wtl."))
                   for k in changed), diff

    # the comparing machine: both experiments, then the sweep table over them
    _run(dvc + ["exp", "pull", "origin"], work, env)
    rows = json.loads(_run(dvc + ["exp", "show", "--json"], work, env))
    pulled = {e["name"] for row in rows for e in row.get("experiments") or []}
    assert pulled == set(machines), pulled
    grid, skipped = _sweep_table(repo_root).collect(rows, "dinov2")
    baseline = json.loads((work / "metrics/table2.json").read_text())["dinov2"]["tg_matl"]
    assert grid == {**computed, start: baseline}, (grid.keys(), computed.keys())
    assert sum(skipped.values()) == 0, skipped
    # exp push / exp pull carried the experiments' outputs through the DVC remote as well
    for name in machines:
        lock = yaml.safe_load((tmp_path / name / "dvc.lock").read_text())["stages"]
        for out in lock["select"]["outs"] + lock["train_tg@dinov2"]["outs"]:
            digest = out["md5"]
            entry = work / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
            assert entry.is_file(), (name, out["path"])
            if digest.endswith(".dir"):
                missing = [f["relpath"] for f in json.loads(entry.read_text())
                           if not (entry.parent.parent / f["md5"][:2] / f["md5"][2:]).is_file()]
                assert missing == [], (name, out["path"], missing)
