"""The software a run used: installed versions, checked against ``requirements.lock``.

``requirements.lock`` (written by ``make lock``: ``uv pip compile --universal --generate-hashes``)
pins every package for every platform and Python >= 3.11; ``make setup`` installs exactly that and
then runs ``python -m tgmatl.versions --check requirements.lock``, which fails naming each package
whose installed version is not the pinned one. The stages record :func:`environment` with their
results (``results/<backbone>/<setup>.json``, key ``environment``) and the report prints it
(``report.md``, section *Software*), so a number can always be traced to the versions behind it.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import re
import sys
import tomllib
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

# Shown in the report: the packages whose versions move the numbers (or read/write the data).
KEY_PACKAGES = (
    "tensorflow", "keras", "keras-hub", "numpy", "scipy", "scikit-learn", "pandas", "pyarrow",
    "rasterio", "pillow", "safetensors", "dvc",
)
DEFAULT_LOCK = "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?\s*$")


def canonical(name: str) -> str:
    """PEP 503 normalised project name (``Keras_Hub`` -> ``keras-hub``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions(names: Iterable[str] | None = None) -> dict[str, str]:
    """Installed version of each of ``names`` (all installed distributions when None).

    Keys are canonical names; a name that is not installed maps to ``"not installed"``.
    """
    if names is None:
        found = {canonical(d.metadata["Name"]): d.version for d in metadata.distributions()
                 if d.metadata["Name"]}
        return dict(sorted(found.items()))
    out = {}
    for name in names:
        try:
            out[canonical(name)] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[canonical(name)] = "not installed"
    return out


def read_lock(path: str | Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{canonical name: version}`` of the pins in a requirements lock that apply here.

    A pin with an environment marker (``pywin32==312 ; sys_platform == 'win32'``) counts only
    where the marker holds (``env``: marker variables to use instead of this interpreter's).
    """
    from packaging.markers import Marker

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: lock file not found (make lock writes it)")
    pins: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line[0] in "# \t-":  # comments, hash continuation lines, options
            continue
        m = _PIN.match(line)
        if m is None:
            raise ValueError(f"{path}:{lineno}: not a 'name==version' pin: {line!r}")
        name, version, marker = m.groups()
        if marker and not Marker(marker).evaluate(dict(env) if env else None):
            continue
        pins[canonical(name)] = version
    return pins


def lock_mismatches(lock: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """One line per locked package not installed at its pinned version (sorted by name)."""
    out = []
    for name, want in sorted(lock.items()):
        have = installed.get(name)
        if have is None:
            out.append(f"{name}: pinned {want}, not installed")
        elif have != want:
            out.append(f"{name}: pinned {want}, installed {have}")
    return out


def lock_uncovered(pyproject: str | Path, lock: Mapping[str, str],
                   extras: Iterable[str] = ("dev",)) -> list[str]:
    """Requirements of ``pyproject`` (and ``extras``) that the lock lacks or pins outside range.

    Non-empty means the lock is stale: ``make lock`` regenerates it.
    """
    from packaging.requirements import Requirement

    project = tomllib.loads(Path(pyproject).read_text())["project"]
    reqs = list(project.get("dependencies", []))
    for extra in extras:
        reqs += project.get("optional-dependencies", {}).get(extra, [])
    out = []
    for text in reqs:
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        pinned = lock.get(canonical(req.name))
        if pinned is None:
            out.append(f"{req}: not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            out.append(f"{req}: the lock pins {pinned}")
    return out


def lock_digest(path: str | Path) -> str:
    """First 12 hex digits of the lock file's SHA-256 (names the lock a run was set up from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def environment(lock: str | Path | None = DEFAULT_LOCK,
                packages: Iterable[str] = KEY_PACKAGES) -> dict[str, Any]:
    """What a result was computed with: Python, platform, key package versions, lock agreement.

    ``lock`` (relative to the working directory: the repo root in a stage) adds its digest and
    ``matches_lock`` (every pin installed as locked) with the mismatching packages, if any.
    """
    from tgmatl import __version__

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "tgmatl": __version__,
        "packages": installed_versions(packages),
    }
    if lock is not None and Path(lock).is_file():
        mismatches = lock_mismatches(read_lock(lock), installed_versions())
        env["lock"] = {"file": Path(lock).name, "sha256_12": lock_digest(lock),
                       "matches_lock": not mismatches, "mismatches": mismatches}
    return env


def software_markdown(envs: Iterable[Mapping[str, Any]]) -> str:
    """A markdown table of the versions behind a set of results (one column per distinct set)."""
    distinct: list[Mapping[str, Any]] = []
    for env in envs:
        if env and env not in distinct:
            distinct.append(env)
    if not distinct:
        return "No versions recorded (results written before tgmatl recorded them)."

    def row(label: str, get) -> str:
        return f"| {label} | " + " | ".join(str(get(e)) for e in distinct) + " |"

    head = ["| | " + " | ".join(f"set {i + 1}" for i in range(len(distinct))) + " |",
            "|---|" + "---|" * len(distinct)]
    lines = [row("python", lambda e: e.get("python")), row("platform", lambda e: e.get("platform"))]
    names = sorted({n for e in distinct for n in e.get("packages", {})})
    lines += [row(n, lambda e, n=n: e.get("packages", {}).get(n, "–")) for n in names]

    def lock_cell(e: Mapping[str, Any]) -> str:
        lk = e.get("lock")
        if not lk:
            return "no lock file"
        state = "as locked" if lk["matches_lock"] else f"{len(lk['mismatches'])} differ"
        return f"{lk['sha256_12']} ({state})"

    lines.append(row(DEFAULT_LOCK, lock_cell))
    note = ("" if len(distinct) == 1 else
            f"\n\n**The results were computed under {len(distinct)} different sets of versions.**")
    return "\n".join(head + lines) + note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tgmatl.versions",
        description="Print the environment, or check it (and pyproject.toml) against the lock.")
    ap.add_argument("--check", metavar="LOCK", help="fail unless every pin is installed as locked")
    ap.add_argument("--pyproject", default="pyproject.toml",
                    help="with --check: also fail when the lock does not cover this file")
    args = ap.parse_args(argv)
    if args.check is None:
        import json

        print(json.dumps(environment(), indent=2, sort_keys=True))
        return 0
    problems = lock_mismatches(read_lock(args.check), installed_versions())
    if Path(args.pyproject).is_file():
        problems += [f"{p} (run `make lock`)"
                     for p in lock_uncovered(args.pyproject, read_lock(args.check))]
    for p in problems:
        print(f"tgmatl.versions: {args.check}: {p}", file=sys.stderr)
    if not problems:
        print(f"tgmatl.versions: installed packages match {args.check} "
              f"({len(read_lock(args.check))} pins, sha256 {lock_digest(args.check)})")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
