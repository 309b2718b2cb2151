"""A working copy of the repository for end-to-end DVC tests (run in a temporary folder), the
environment its commands run in, and its first git commit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def copy_repo(repo_root: Path, work: Path) -> Path:
    """Copy the files git tracks (and untracked, not ignored ones) of ``repo_root`` to ``work``;
    skips the test when git is missing."""
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo_root,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (repo_root / rel).is_file():
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo_root / rel, work / rel)
    return work


VENV_BIN = Path(sys.executable).parent
GIT = ["git", "-c", "commit.gpgsign=false"]


def dvc_env(repo: Path | None = None) -> dict[str, str]:
    """This venv first on PATH (stages call ``python``; ``dvc`` is there), ``repo``'s own
    ``tgmatl`` first on PYTHONPATH (when given), quiet TensorFlow on Keras' TensorFlow backend,
    a git identity for the test's commits, and no ``DVC_ROOT`` inherited from an outer run."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    if repo is not None:
        outer = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = os.pathsep.join([str(repo / "src"), *([outer] if outer else [])])
    env.pop("DVC_ROOT", None)
    return env


def commit_all(work: Path, env: dict[str, str], message: str = "copy",
               dvc_init: bool = False) -> None:
    """``git init`` (and ``dvc init`` when asked) in ``work``, then commit every file."""
    steps = [GIT + ["init", "-q"]]
    if dvc_init:
        steps.append([str(VENV_BIN / "dvc"), "init", "-q"])
    steps += [GIT + ["add", "-A"], GIT + ["commit", "-qm", message]]
    for cmd in steps:
        subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True, timeout=120)
