"""Shared test settings: quiet TensorFlow, keras on the TensorFlow backend, repo paths."""

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI clones the repo with ../shared beside it; a user's fresh clone has none.
SHARED_DIR = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"real data not available: {SHARED_DIR}/data is absent (needs ../shared)")
    return SHARED_DIR
