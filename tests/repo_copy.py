"""A working copy of the repository for end-to-end DVC tests (run in a temporary folder)."""

from __future__ import annotations

import shutil
import subprocess
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
