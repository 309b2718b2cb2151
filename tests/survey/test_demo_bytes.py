"""The demo survey's bytes do not depend on the CPU (README: Reproducibility).

numpy dispatches ``exp``, ``sin``, ``power``... to SIMD kernels per CPU (AVX-512 SVML here, AVX2
or baseline code elsewhere) and BLAS picks a kernel per CPU; both round differently in the last
bit, and a last-bit difference flips uint8 pixels. The generator avoids them
(:mod:`tgmatl.survey.demo.exact`). Pinned here: the sha256 of a small survey, and the same bytes
for the survey, its tiles and its samples in a subprocess that turns off every SIMD extension
numpy would dispatch to beyond its baseline, forces OpenBLAS's oldest kernel and glibc's
non-FMA, non-AVX2 libm.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tgmatl.config import DemoParams, IsolateParams, TileParams
from tgmatl.params import parse_section
from tgmatl.survey.demo import generate_survey
from tgmatl.survey.isolate import isolate_samples
from tgmatl.survey.tiling import tile_survey

# A small survey: 3 scenes, JPEG + GeoTIFF + thermal files; every body plan and coat path runs.
DEMO = {
    "n_targets": 9, "targets_per_scene": 3, "width": 640, "height": 480,
    "classes": ["cow", "deer", "horse"], "class_weights": [116, 51, 73],
    "geotiff_fraction": 0.34, "thermal": "file", "mixed_scene_fraction": 0.34,
    "touching_fraction": 0.2, "occlusion_fraction": 0.3, "jpeg_quality": 92,
    "image_format": "jpg", "gsd_m": 0.02,
}
TILE = {"size": 300, "stride": 150, "edge": "shift", "min_visible": 0.5}
# sha256 of the survey (relative paths and bytes); changes only with the generator's code
DEMO_SHA256 = "9ee1808e406865bc3979f8141d7876682b03d562d82fc3cdbd48285551a1bf0d"


def folder_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def build(out: Path) -> dict[str, str]:
    """Survey, tiles and recentred samples of :data:`DEMO` under ``out``; each folder's sha256.

    Paths relative to ``out`` (the tiles' and samples' metadata record the root as given, as the
    stages do with dvc.yaml's relative paths)."""
    out.mkdir(parents=True, exist_ok=True)
    old = os.getcwd()
    os.chdir(out)
    try:
        generate_survey(parse_section(DemoParams, DEMO, "demo"), 0, Path("demo"))
        tile_survey(Path("demo"), "awir", ("DontCare",), parse_section(TileParams, TILE, "tile"),
                    out=Path("tiles"), on_error="stop")
        iso = parse_section(IsolateParams, {"policy": "recentre", "min_box_px": 4}, "isolate")
        isolate_samples(Path("tiles"), iso, out=Path("samples"), metrics=Path("data.json"),
                        root=Path("demo"))
    finally:
        os.chdir(old)
    return {name: folder_sha256(out / name) for name in ("demo", "tiles", "samples")}


def _no_simd_env() -> dict[str, str]:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    env = {**os.environ, "OPENBLAS_CORETYPE": "Prescott",
           "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"),
                                          os.environ.get("PYTHONPATH", "")])}
    if found:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(found)
    return env


@pytest.fixture(scope="module")
def here(tmp_path_factory) -> dict[str, str]:
    return build(tmp_path_factory.mktemp("here"))


def test_demo_bytes_are_pinned(here):
    assert here["demo"] == DEMO_SHA256


def test_same_bytes_without_simd(here, tmp_path):
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_demo_bytes as t; print(json.dumps(t.build(Path(sys.argv[2]))))")
    env = _no_simd_env()
    proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent),
                           str(tmp_path / "there")], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    there = json.loads(proc.stdout.strip().splitlines()[-1])
    assert there == here
    if any("512" in f or f == "X86_V4" for f in env.get("NPY_DISABLE_CPU_FEATURES", "").split()):
        # on an AVX-512 CPU the subprocess really ran other kernels: numpy's power differs
        check = subprocess.run(
            [sys.executable, "-c", "import numpy as np; x = np.linspace(0.1, 9, 4096, "
             "dtype=np.float32); print((x ** np.float32(2.7)).tobytes().hex())"],
            env=env, capture_output=True, text=True, check=True).stdout.strip()
        x = np.linspace(0.1, 9, 4096, dtype=np.float32)
        assert check != (x ** np.float32(2.7)).tobytes().hex()
