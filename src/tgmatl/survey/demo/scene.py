"""One scene: place the planned animals on a terrain, then composite shadows, animals, occluders.

Placement works on an animal label map: a free-standing animal keeps a gap to every other animal,
water and bush; a *touching* animal is slid against an already placed one until their silhouettes
meet (small overlap allowed, as when one head lies over a neighbour's back). Every box stays
``margin`` pixels inside the scene, so no target is cut by the border.

Boxes are the axis-aligned extent of the whole animal (amodal): vegetation that hides part of an
animal does not shrink its box, as annotators box the animal whose outline they can infer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, gaussian_filter

from tgmatl.survey.demo.noise import F32, blend, clip_window, darken
from tgmatl.survey.demo.species import Species
from tgmatl.survey.demo.sprites import Sprite, Sun, render_animal, render_bush, shadow_patch
from tgmatl.survey.demo.terrain import SHADOW_TINT, render_terrain

GAP_M = 0.8  # free-standing animals keep this gap (metres) to anything else where they can
GAP_MIN_PX = 4  # ... and at least this many pixels in a crowded scene


class PlacementError(RuntimeError):
    """The planned animals do not fit in the scene."""


@dataclass(frozen=True)
class AnimalPlan:
    class_id: int
    touching: bool  # placed against an already placed animal
    occluded: bool  # partly hidden by a bush drawn over it


@dataclass
class Placed:
    class_id: int
    sprite: Sprite
    y0: int  # sprite top-left in the scene
    x0: int
    box: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (pixel edges, max exclusive)
    heading: float
    hidden: float = 0.0  # share of the silhouette covered by an occluder


@dataclass
class SceneResult:
    rgb: np.ndarray  # [H, W, 3] uint8
    thermal: np.ndarray | None  # [H, W] uint8
    boxes: list[tuple[int, int, int, int, int]]  # class_id, xmin, ymin, xmax, ymax
    n_touching: int  # animals in contact with another
    n_occluded: int  # animals partly hidden by vegetation


def _local_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _support(mask: np.ndarray, direction: np.ndarray) -> float:
    """Largest projection of the mask's pixels (relative to the patch centre) on ``direction``."""
    ys, xs = np.nonzero(mask)
    c = mask.shape[0] / 2
    return float(np.max((xs + 0.5 - c) * direction[0] + (ys + 0.5 - c) * direction[1]))


class _Layout:
    def __init__(self, shape: tuple[int, int], blocked: np.ndarray, margin: int) -> None:
        self.shape = shape
        self.blocked = blocked
        self.margin = margin
        self.labels = np.zeros(shape, np.int16)
        self.placed: list[Placed] = []

    def _window(self, mask: np.ndarray, y0: int, x0: int):
        return clip_window(self.shape, y0, x0, mask.shape[0], mask.shape[1])

    def inside(self, sprite_box: tuple[int, int, int, int], y0: int, x0: int) -> bool:
        h, w = self.shape
        bx0, by0, bx1, by1 = sprite_box
        m = self.margin
        return bx0 + x0 >= m and by0 + y0 >= m and bx1 + x0 <= w - m and by1 + y0 <= h - m

    def free(self, grown: np.ndarray, pad: int, y0: int, x0: int) -> bool:
        win = self._window(grown, y0 - pad, x0 - pad)
        if win is None:
            return False
        s, p = win
        g = grown[p]
        return not (g & (self.labels[s] > 0)).any() and not (g & self.blocked[s]).any()

    def touch_ok(self, mask: np.ndarray, y0: int, x0: int) -> bool:
        s, p = self._window(mask, y0, x0)
        m = mask[p]
        overlap = (m & (self.labels[s] > 0)).sum()
        return overlap <= 0.04 * mask.sum() and not (m & self.blocked[s]).any()

    def overlap_with(self, mask: np.ndarray, y0: int, x0: int, label: int) -> int:
        win = self._window(mask, y0, x0)
        if win is None:
            return 0
        s, p = win
        return int((mask[p] & (self.labels[s] == label)).sum())

    def add(self, item: Placed) -> None:
        self.placed.append(item)
        s, p = self._window(item.sprite.mask, item.y0, item.x0)
        lab = self.labels[s]
        lab[item.sprite.mask[p] & (lab == 0)] = len(self.placed)


def _grow(mask: np.ndarray, pad: int) -> np.ndarray:
    return binary_dilation(np.pad(mask, pad), iterations=pad)


def _place_free(
    rng: np.random.Generator, lay: _Layout, sprite: Sprite, herd: tuple[float, float],
    gsd_m: float,
) -> tuple[int, int] | None:
    h, w = lay.shape
    box = _local_box(sprite.mask)
    # grazing animals keep ~a metre apart; a crowded scene falls back to GAP_MIN_PX
    wide = max(GAP_MIN_PX, round(GAP_M / gsd_m))
    gaps = {wide: _grow(sprite.mask, wide), GAP_MIN_PX: _grow(sprite.mask, GAP_MIN_PX)}
    spread = 0.22 * min(h, w)
    for attempt in range(400):
        if attempt < 100:  # herds: most animals near the herd's centre
            cy, cx = rng.normal(herd[0], spread), rng.normal(herd[1], spread)
        else:
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        gap = wide if attempt < 300 else GAP_MIN_PX
        y0, x0 = round(cy - sprite.size / 2), round(cx - sprite.size / 2)
        if lay.inside(box, y0, x0) and lay.free(gaps[gap], gap, y0, x0):
            return y0, x0
    return None


def _place_touching(
    rng: np.random.Generator, lay: _Layout, sprite: Sprite, partners: list[int]
) -> tuple[int, int] | None:
    box = _local_box(sprite.mask)
    mask = sprite.mask
    for j in partners:
        other = lay.placed[j]
        ocy = other.y0 + other.sprite.size / 2
        ocx = other.x0 + other.sprite.size / 2
        for ang in rng.uniform(0, 2 * math.pi, 12):
            d = np.array([math.cos(ang), math.sin(ang)])
            # start just apart (projections on d touching), slide in until the silhouettes meet
            dist = _support(other.sprite.mask, d) + _support(mask, -d) + 1.0
            while dist > 0:
                cy, cx = ocy + dist * d[1], ocx + dist * d[0]
                y0, x0 = round(cy - sprite.size / 2), round(cx - sprite.size / 2)
                if lay.overlap_with(mask, y0, x0, j + 1) > 0:
                    break
                dist -= 1.5
            if dist <= 0:
                continue
            if lay.inside(box, y0, x0) and lay.touch_ok(mask, y0, x0):
                return y0, x0
    return None


def render_scene(
    rng: np.random.Generator,
    plan: list[AnimalPlan],
    species: list[Species],
    shape: tuple[int, int],
    gsd_m: float,
    sun: Sun,
    margin: int,
    thermal: bool,
) -> SceneResult:
    """Draw one scene holding the planned animals (free-standing ones placed first)."""
    h, w = shape
    terrain = render_terrain(rng, shape, gsd_m, sun)
    lay = _Layout(shape, terrain.blocked, margin)
    herd = (rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w)
    order = sorted(range(len(plan)), key=lambda i: plan[i].touching)
    for k in order:
        item = plan[k]
        sp = species[item.class_id]
        spot = None
        if item.touching and lay.placed:
            partners = list(rng.permutation(len(lay.placed)))
            lead = lay.placed[partners[0]]
            # companions often stand parallel or head-to-tail
            if rng.random() < 0.5:
                heading = lead.heading + rng.normal(0, 0.3) + math.pi * rng.integers(0, 2)
            else:
                heading = rng.uniform(0, 2 * math.pi)
            sprite = render_animal(rng, sp, heading, gsd_m, sun)
            spot = _place_touching(rng, lay, sprite, partners)
        else:
            heading = rng.uniform(0, 2 * math.pi)
            sprite = render_animal(rng, sp, heading, gsd_m, sun)
        if spot is None:
            spot = _place_free(rng, lay, sprite, herd, gsd_m)
        if spot is None:
            raise PlacementError(
                f"could not place animal {len(lay.placed) + 1} of {len(plan)} "
                f"in a {w}x{h} scene without overlap"
            )
        y0, x0 = spot
        bx0, by0, bx1, by1 = _local_box(sprite.mask)
        lay.add(Placed(item.class_id, sprite, y0, x0, (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0),
                       heading))

    rgb, heat = terrain.rgb, terrain.heat
    for p in lay.placed:
        shade, oy, ox = shadow_patch(p.sprite, sun)
        darken(rgb, heat, shade, p.y0 + oy, p.x0 + ox, SHADOW_TINT, 0.1)
    for p in lay.placed:
        blend(rgb, p.sprite.rgb, p.sprite.alpha, p.y0, p.x0)
        blend(heat, p.sprite.heat, p.sprite.alpha, p.y0, p.x0)
    occluded_ids = [i for i, k in enumerate(order) if plan[k].occluded]
    n_occluded = sum(_occlude(rng, lay, i, rgb, heat, gsd_m, sun) for i in occluded_ids)

    # camera: exposure and a little sensor noise on the visible image
    rgb *= F32(rng.uniform(0.93, 1.07))
    rgb += F32(0.012) * rng.standard_normal(rgb.shape, dtype=F32)
    out = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    th = _thermal_sensor(rng, heat) if thermal else None
    boxes = [(p.class_id, *p.box) for p in lay.placed]
    return SceneResult(out, th, boxes, _count_touching(lay), n_occluded)


def _occlude(
    rng: np.random.Generator, lay: _Layout, idx: int, rgb: np.ndarray, heat: np.ndarray,
    gsd_m: float, sun: Sun,
) -> bool:
    """Draw a bush over part (10-50 %) of animal ``idx``, hiding no other animal by half."""
    p = lay.placed[idx]
    mask = p.sprite.mask
    area = mask.sum()
    r_eq = math.sqrt(area / math.pi)
    kind = "tussock" if rng.random() < 0.5 else "shrub"
    bush = render_bush(rng, max(r_eq * rng.uniform(0.8, 1.3), 0.35 / gsd_m), sun, kind)
    bmask = bush.alpha > 0.5
    pcy, pcx = p.y0 + p.sprite.size / 2, p.x0 + p.sprite.size / 2
    for ang in rng.uniform(0, 2 * math.pi, 8):
        d = np.array([math.cos(ang), math.sin(ang)])
        reach = _support(mask, d) + 0.1 * bush.size
        for _ in range(10):  # slide the bush along d until it hides 10-50 % of the animal
            by0 = round(pcy + reach * d[1] - bush.size / 2)
            bx0 = round(pcx + reach * d[0] - bush.size / 2)
            win = clip_window(lay.shape, by0, bx0, bush.size, bush.size)
            if win is None:
                break
            s, q = win
            lab = lay.labels[s]
            hit = bmask[q]
            cover = np.bincount(lab[hit].ravel(), minlength=len(lay.placed) + 1)
            own = cover[idx + 1] / area
            others = [cover[j + 1] / lay.placed[j].sprite.mask.sum()
                      for j in range(len(lay.placed)) if j != idx]
            if max(others, default=0.0) > 0.5:
                break
            if own < 0.1:
                reach -= 0.08 * bush.size
            elif own > 0.5:
                reach += 0.08 * bush.size
            else:
                shade, oy, ox = shadow_patch(bush, sun)
                darken(rgb, heat, shade * F32(0.9), by0 + oy, bx0 + ox, SHADOW_TINT, 0.08)
                blend(rgb, bush.rgb, bush.alpha, by0, bx0)
                blend(heat, bush.heat, bush.alpha, by0, bx0)
                p.hidden = float(own)
                return True
    return False


def _count_touching(lay: _Layout) -> int:
    n = 0
    for i, p in enumerate(lay.placed):
        grown = _grow(p.sprite.mask, 1)
        win = clip_window(lay.shape, p.y0 - 1, p.x0 - 1, grown.shape[0], grown.shape[1])
        s, q = win
        lab = lay.labels[s][grown[q]]
        n += bool(((lab > 0) & (lab != i + 1)).any())
    return n


def _thermal_sensor(rng: np.random.Generator, heat: np.ndarray) -> np.ndarray:
    """A microbolometer's view: optics blur, temporal noise, column fixed-pattern noise."""
    t = gaussian_filter(heat, 1.6)
    t += F32(0.012) * rng.standard_normal(t.shape, dtype=F32)
    t += F32(0.006) * rng.standard_normal((1, t.shape[1]), dtype=F32)
    return np.clip(t * 255 + 0.5, 0, 255).astype(np.uint8)
