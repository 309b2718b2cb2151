"""Plan the survey (which animals go in which scene), render each scene, write AWIR's layout."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine
from tqdm import tqdm

from tgmatl.config import DemoParams
from tgmatl.io import atomic_dir
from tgmatl.params import ParamsError
from tgmatl.survey.demo.scene import AnimalPlan, PlacementError, SceneResult, render_scene
from tgmatl.survey.demo.species import max_extent_m, species_for
from tgmatl.survey.demo.sprites import Sun
from tgmatl.survey.demo.writer import write_geotiff, write_jpeg, write_png, yolo_lines

log = logging.getLogger(__name__)

KEY = "demo"
CRS_EPSG = 32633  # UTM zone 33N: central Europe
ORIGIN = (452_000.0, 5_412_000.0)  # easting, northing of the first scene's top-left corner
SCENES_PER_LINE = 6  # scenes laid out in flight lines, 5 m apart
FILL = 0.10  # at most this share of a scene covered by animal footprints


def class_counts(weights: tuple[float, ...], n: int) -> list[int]:
    """Split ``n`` targets in proportion to ``weights`` (largest remainder; ties: lower index)."""
    w = np.asarray(weights, float)
    quota = w / w.sum() * n
    counts = np.floor(quota).astype(int)
    rest = n - counts.sum()
    order = sorted(range(len(w)), key=lambda i: (-(quota[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return [int(c) for c in counts]


def margin_px(gsd_m: float) -> int:
    return max(8, round(0.25 / gsd_m))


def _footprint_px(p: DemoParams) -> float:
    """Mean animal footprint (pixels), weighted by class share."""
    areas = []
    for i, name in enumerate(p.classes):
        sp = species_for(name, i)
        length = sp.body_len_m * (1 + sp.neck + sp.head)
        areas.append(0.8 * length * sp.body_len_m * sp.width_ratio / p.gsd_m**2)
    w = np.asarray(p.class_weights, float)
    return sum(a * wi for a, wi in zip(areas, (w / w.sum()).tolist(), strict=True))


def scene_capacity(p: DemoParams) -> int:
    return max(1, int(FILL * p.width * p.height / _footprint_px(p)))


def check_fits(p: DemoParams) -> None:
    """Rules that need the body plans: animals fit a scene, the targets fit the scenes."""
    margin = margin_px(p.gsd_m)
    for i, name in enumerate(p.classes):
        extent = max_extent_m(species_for(name, i)) / p.gsd_m
        if extent + 2 * margin > min(p.width, p.height):
            raise ParamsError(
                f"{KEY}.gsd_m: a {name} spans up to {extent:.0f} px at {p.gsd_m} m/px, more than "
                f"a {p.width}x{p.height} scene holds; raise {KEY}.gsd_m or the scene size"
            )
    cap = scene_capacity(p)
    if p.n_targets > cap * p.n_scenes:
        raise ParamsError(
            f"{KEY}.n_targets: {p.n_targets} targets do not fit in {p.n_scenes} scenes of "
            f"{p.width}x{p.height} px (at most {cap} per scene); lower {KEY}.targets_per_scene"
        )


def plan_survey(p: DemoParams, rng: np.random.Generator) -> list[list[AnimalPlan]]:
    """Which animals each scene holds: single-species herds, and a share of mixed scenes.

    Herds are consecutive runs of the class-sorted targets; then pairs of scenes exchange a few
    animals of different species until ``demo.mixed_scene_fraction`` of the scenes hold several
    species (or no exchange is left: a one-animal scene is never mixed). Exchanges keep every
    scene's size and every class's total.
    """
    counts = class_counts(p.class_weights, p.n_targets)
    ids = np.repeat(np.arange(len(counts)), counts)
    cap = scene_capacity(p)
    sizes = 1 + rng.multinomial(p.n_targets - p.n_scenes, rng.dirichlet(np.full(p.n_scenes, 4.0)))
    while sizes.max() > cap:  # move overflow to the emptiest scenes
        sizes[np.argmax(sizes)] -= 1
        sizes[np.argmin(sizes)] += 1
    chunks = np.split(ids, np.cumsum(sizes)[:-1])
    chunks = [chunks[i].copy() for i in rng.permutation(p.n_scenes)]
    _mix_scenes(chunks, round(p.mixed_scene_fraction * p.n_scenes), rng)
    chunks = [c[rng.permutation(c.size)] for c in chunks]

    # touching: never the first animal of a scene (it needs a partner placed before it)
    slots = [(s, k) for s, c in enumerate(chunks) for k in range(c.size)]
    eligible = [i for i, (_, k) in enumerate(slots) if k > 0]
    n_touch = min(round(p.touching_fraction * p.n_targets), len(eligible))
    touching = set(rng.choice(eligible, n_touch, replace=False).tolist()) if n_touch else set()
    n_occ = round(p.occlusion_fraction * p.n_targets)
    occluded = set(rng.choice(len(slots), n_occ, replace=False).tolist()) if n_occ else set()
    plans: list[list[AnimalPlan]] = [[] for _ in chunks]
    for i, (s, k) in enumerate(slots):
        plans[s].append(AnimalPlan(int(chunks[s][k]), i in touching, i in occluded))
    return plans


def _mix_scenes(chunks: list[np.ndarray], n_mixed: int, rng: np.random.Generator) -> None:
    """Exchange animals between scenes (in place) until ``n_mixed`` scenes hold several classes.

    Each step takes a random single-species scene ``i`` (class ``a``, >= 2 animals) and a random
    partner ``j`` holding other classes, and swaps ``k`` of ``i``'s animals for ``k`` non-``a``
    animals of ``j``; ``k`` is drawn so that both scenes end up mixed. Every step mixes one more
    scene at least, so the loop ends.
    """
    n_classes = int(max(c.max() for c in chunks)) + 1
    while True:
        m = np.stack([np.bincount(c, minlength=n_classes) for c in chunks])  # [scenes, classes]
        size = m.sum(axis=1)
        mixed = (m > 0).sum(axis=1) > 1
        pure = np.flatnonzero(~mixed & (size >= 2))
        if mixed.sum() >= n_mixed or pure.size == 0:
            return
        a = m[pure].argmax(axis=1)
        other = size[None, :] - m[:, a].T  # [pure, scenes]: animals of j not of i's class
        kmax = np.minimum(np.minimum(size[pure, None] // 2, size[None, :] // 2),
                          other - mixed[None, :])
        kmax[np.arange(pure.size), pure] = 0
        options = np.argwhere(kmax >= 1)
        if options.size == 0:
            return
        pi, j = options[rng.integers(len(options))]
        i = int(pure[pi])
        k = int(rng.integers(1, kmax[pi, j] + 1))
        give = rng.choice(np.flatnonzero(chunks[j] != a[pi]), k, replace=False)
        take = np.arange(k)  # i is single-species: any k of its animals
        chunks[i][take], chunks[j][give] = chunks[j][give], chunks[i][take].copy()


def _geo(index: int, p: DemoParams) -> Affine:
    col, row = index % SCENES_PER_LINE, index // SCENES_PER_LINE
    east = ORIGIN[0] + col * (p.width * p.gsd_m + 5.0)
    north = ORIGIN[1] - row * (p.height * p.gsd_m + 5.0)
    return Affine.translation(east, north) @ Affine.scale(p.gsd_m, -p.gsd_m)


def generate_survey(params: DemoParams, seed: int, out_dir: Path) -> dict:
    """Write the synthetic survey to ``out_dir`` (replaced atomically); return summary counts."""
    p = params
    check_fits(p)
    species = [species_for(name, i) for i, name in enumerate(p.classes)]
    streams = np.random.SeedSequence(seed).spawn(p.n_scenes + 1)
    rng = np.random.default_rng(streams[0])
    plans = plan_survey(p, rng)
    n_geo = 0 if p.geotiff_fraction == 0 else max(1, round(p.geotiff_fraction * p.n_scenes))
    geotiff = set(rng.permutation(p.n_scenes)[:n_geo].tolist())
    sun_azimuth = rng.uniform(0, 2 * math.pi)  # one survey flight: similar sun in every scene
    digits = max(3, len(str(p.n_scenes - 1)))
    crs = CRS.from_epsg(CRS_EPSG)
    margin = margin_px(p.gsd_m)

    per_class = [0] * len(p.classes)
    per_folder = [0] * len(p.classes)
    touching = occluded = n_mixed = 0
    with atomic_dir(out_dir) as tmp:
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in p.classes))
        for i in tqdm(range(p.n_scenes), desc="demo scenes", unit="scene"):
            srng = np.random.default_rng(streams[i + 1])
            sun = Sun(sun_azimuth + srng.normal(0, 0.15), math.radians(srng.uniform(45, 65)))
            name = f"scene_{i:0{digits}d}"
            try:
                res = render_scene(srng, plans[i], species, (p.height, p.width), p.gsd_m, sun,
                                   margin, thermal=p.thermal != "none")
            except PlacementError as exc:
                raise ParamsError(
                    f"{KEY}.n_targets: {name}: {exc}; lower {KEY}.n_targets or raise "
                    f"{KEY}.width / {KEY}.height or lower {KEY}.targets_per_scene"
                ) from None
            ids = [b[0] for b in res.boxes]
            majority = int(np.argmax(np.bincount(ids, minlength=len(p.classes))))
            folder = tmp / p.classes[majority]
            folder.mkdir(exist_ok=True)
            _write_scene(folder, name, res, p, _geo(i, p) if i in geotiff else None, crs)
            for c in ids:
                per_class[c] += 1
            per_folder[majority] += 1
            n_mixed += len(set(ids)) > 1
            touching += res.n_touching
            occluded += res.n_occluded

    summary = {
        "scenes": p.n_scenes,
        "targets": sum(per_class),
        "per_class": dict(zip(p.classes, per_class, strict=True)),
        "scenes_per_folder": dict(zip(p.classes, per_folder, strict=True)),
        "mixed_scenes": n_mixed,
        "geotiff_scenes": len(geotiff),
        "thermal": p.thermal,
        "touching": touching,
        "occluded": occluded,
    }
    log.info(
        "demo: %d scenes (%d GeoTIFF, %d with several species), %d targets: %s; %d touching, "
        "%d partly occluded",
        p.n_scenes, len(geotiff), n_mixed, summary["targets"],
        ", ".join(f"{k} {v}" for k, v in summary["per_class"].items()), touching, occluded,
    )
    return summary


def _write_scene(
    folder: Path, name: str, res: SceneResult, p: DemoParams, transform: Affine | None,
    crs: CRS,
) -> None:
    h, w = res.rgb.shape[:2]
    (folder / f"{name}.txt").write_text(yolo_lines(res.boxes, w, h))
    if p.thermal == "band":
        bands = np.concatenate([res.rgb, res.thermal[..., None]], axis=-1)
        names = ("red", "green", "blue", "thermal")
    else:
        bands, names = res.rgb, ("red", "green", "blue")
    if transform is not None:
        write_geotiff(folder / f"{name}.tif", bands, transform, crs, names)
    elif p.image_format == "png":
        write_png(folder / f"{name}.png", bands)
    else:  # validated: a 4-band scene is never a JPEG
        write_jpeg(folder / f"{name}.jpg", bands, p.jpeg_quality)
    if p.thermal == "file":
        geo = (transform, crs) if transform is not None else (None, None)
        write_geotiff(folder / f"{name}_thermal.tif", res.thermal, *geo, names=("thermal",))
