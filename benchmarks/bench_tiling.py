"""Throughput of stages `tile` and `isolate` on the demo survey and on HIT-UAV (whole test split).

For each survey, side by side in one run:

- ``decode``: read every scene once through rasterio (the floor: no tiling, no writing);
- ``tile``: :func:`tgmatl.survey.tiling.tile_survey` (annotations, windows, tile PNGs, Parquet);
- ``isolate tile`` / ``isolate recentre``: :func:`tgmatl.survey.isolate.isolate_samples` per policy.

Rates are tiles (or samples) per second of wall time; ``x decode`` is a stage's time over the
decode floor. Params come from ``params.yaml`` (``tile``, ``isolate``; ``data.format`` per
survey). The demo survey is generated with ``tgmatl.survey.demo.generate_survey`` (``demo`` params
and
``seed``) into a temporary folder; HIT-UAV is read from ``../shared`` and skipped when absent.

    .venv/bin/python benchmarks/bench_tiling.py [--params params.yaml] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from tgmatl.config import DataParams, DemoParams, IsolateParams, TileParams
from tgmatl.params import load_params, read_section, read_seed
from tgmatl.survey.annotations import read_survey
from tgmatl.survey.isolate import isolate_samples
from tgmatl.survey.raster import SceneReader
from tgmatl.survey.tiling import tile_survey

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def demo_survey(params: dict, out: Path) -> Path:
    try:
        from tgmatl.survey.demo import generate_survey
    except ImportError:  # the demo area is not there yet: the fixture builder stands in, said so
        sys.path.insert(0, str(REPO / "tests"))
        from fixtures_data import synthetic_survey

        print("tgmatl.survey.demo not importable: using tests/fixtures_data.synthetic_survey")
        return synthetic_survey(out)
    generate_survey(read_section(DemoParams, params, "demo"), read_seed(params), out)
    return out


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def decode_all(root: Path, fmt: str, ignore) -> tuple[int, int]:
    survey = read_survey(root, fmt, ignore)
    for info in survey.infos.values():
        with SceneReader(info) as r:
            r.read(0, 0, info.width, info.height)
    return len(survey.infos), len(survey.boxes)


def bench(name: str, root: Path, fmt: str, ignore, tile, iso, work: Path) -> list[tuple]:
    rows = []
    t_dec, (n_scenes, n_boxes) = timed(lambda: decode_all(root, fmt, ignore))
    rows.append((name, "decode", n_scenes, "scenes", t_dec))
    t_tile, rep = timed(lambda: tile_survey(root, fmt, ignore, tile, work / f"{name}-tiles"))
    rows.append((name, "tile", rep["counts"]["tiles"], "tiles", t_tile))
    for policy in ("tile", "recentre"):
        t_iso, m = timed(lambda p=policy: isolate_samples(
            work / f"{name}-tiles", replace(iso, policy=p), work / f"{name}-{p}",
            work / f"{name}-{p}.json", root=root))
        rows.append((name, f"isolate {policy}", m["samples"], "samples", t_iso))
        print(f"{name} isolate {policy}: {m['samples']} samples of {m['targets']} targets; "
              f"per class {m['per_class']}; dropped {m['dropped']}")
    return [(*r, t_dec) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--keep", help="write outputs here (default: a temporary folder, removed)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the counted warnings go to report.json
    params = load_params(args.params)
    data = read_section(DataParams, params, "data")
    tile = read_section(TileParams, params, "tile")
    iso = read_section(IsolateParams, params, "isolate")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        t_gen, demo = timed(lambda: demo_survey(params, work / "demo"))
        print(f"demo survey generated in {t_gen:.1f} s")
        rows += bench("demo", demo, "awir", data.ignore_classes, tile, iso, work)
        hit = SHARED / "data" / "hit-uav-thermal"
        if hit.is_dir():
            rows += bench("hit-uav", hit, "voc", ["DontCare"], tile, iso, work)
        else:
            print(f"HIT-UAV skipped: {hit} is absent")
    print(f"\ntile.size {tile.size}, tile.stride {tile.stride}, tile.edge {tile.edge}, "
          f"min_visible {tile.min_visible}; isolate.min_box_px {iso.min_box_px}\n")
    print(f"{'survey':<8} {'step':<17} {'count':>6} {'unit':<8} {'seconds':>8} {'per s':>8} "
          f"{'x decode':>9}")
    for name, step, n, unit, t, t_dec in rows:
        print(f"{name:<8} {step:<17} {n:>6} {unit:<8} {t:>8.2f} {n / t:>8.1f} {t / t_dec:>9.2f}")


if __name__ == "__main__":
    main()
