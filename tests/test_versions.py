"""requirements.lock: parsed, covers pyproject.toml, hash-pinned; versions recorded, checked."""

import platform
from importlib import metadata

import pytest

from tgmatl.versions import (
    environment,
    installed_versions,
    lock_mismatches,
    lock_uncovered,
    main,
    read_lock,
    software_markdown,
)

LOCK_TEXT = """\
# header
numpy==2.0.0 \\
    --hash=sha256:aaaa
    # via pandas
pywin32==312 ; sys_platform == 'win32' \\
    --hash=sha256:bbbb
Keras_Hub==0.32.0
"""


def test_read_lock_applies_markers_and_normalises_names(tmp_path):
    lock = tmp_path / "r.lock"
    lock.write_text(LOCK_TEXT)
    assert read_lock(lock, {"sys_platform": "linux"}) == {"numpy": "2.0.0", "keras-hub": "0.32.0"}
    assert read_lock(lock, {"sys_platform": "win32"})["pywin32"] == "312"
    lock.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match=r"r\.lock:1: not a 'name==version' pin"):
        read_lock(lock)


def test_the_repo_lock_pins_every_requirement_with_hashes(repo_root):
    lock = read_lock(repo_root / "requirements.lock")
    # stale lock (pyproject.toml changed without `make lock`): this names what is missing
    assert lock_uncovered(repo_root / "pyproject.toml", lock) == []
    assert {"tensorflow", "keras", "keras-hub", "dvc", "numpy", "pytest", "uv"} <= set(lock)
    text = (repo_root / "requirements.lock").read_text()
    pins = [ln for ln in text.splitlines() if ln and ln[0].isalnum()]
    assert len(pins) >= len(lock) and all(ln.rstrip().endswith("\\") for ln in pins)
    assert text.count("--hash=sha256:") >= len(pins)


def test_lock_uncovered_names_missing_and_out_of_range(tmp_path):
    py = tmp_path / "pyproject.toml"
    py.write_text('[project]\nname = "x"\ndependencies = ["numpy>=2.1", "pandas"]\n'
                  '[project.optional-dependencies]\ndev = ["pytest>=8"]\n')
    got = lock_uncovered(py, {"numpy": "2.0.0", "pytest": "9.0"})
    assert got == ["numpy>=2.1: the lock pins 2.0.0", "pandas: not in the lock"]


def test_mismatches_and_check_command(tmp_path, capsys):
    have = metadata.version("numpy")
    assert lock_mismatches({"numpy": have, "nope": "1"}, {"numpy": have}) == [
        "nope: pinned 1, not installed"]
    good, bad = tmp_path / "good.lock", tmp_path / "bad.lock"
    good.write_text(f"numpy=={have}\n")
    bad.write_text("numpy==0.0.1\n")
    assert main(["--check", str(good), "--pyproject", str(tmp_path / "none.toml")]) == 0
    assert main(["--check", str(bad), "--pyproject", str(tmp_path / "none.toml")]) == 1
    assert f"numpy: pinned 0.0.1, installed {have}" in capsys.readouterr().err


def test_environment_records_versions_and_lock_agreement(tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"numpy=={metadata.version('numpy')}\n")
    env = environment(lock, packages=("numpy", "not-a-package"))
    assert env["python"] == platform.python_version()
    assert env["packages"] == {"numpy": metadata.version("numpy"),
                               "not-a-package": "not installed"}
    assert env["lock"]["matches_lock"] and env["lock"]["mismatches"] == []
    assert len(env["lock"]["sha256_12"]) == 12
    assert "numpy" in installed_versions()
    assert "lock" not in environment(tmp_path / "absent.lock", packages=())


def test_software_markdown_flags_mixed_environments():
    a = {"python": "3.11.7", "platform": "linux-x86_64", "packages": {"numpy": "2.0"},
         "lock": {"sha256_12": "abc", "matches_lock": True, "mismatches": []}}
    b = {**a, "packages": {"numpy": "2.1"}}
    one = software_markdown([a, a])
    assert "| numpy | 2.0 |" in one and "abc (as locked)" in one and "different" not in one
    two = software_markdown([a, b, None])
    assert "| numpy | 2.0 | 2.1 |" in two and "under 2 different sets" in two
