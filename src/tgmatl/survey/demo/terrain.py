"""Pasture seen from a drone: grass, bare soil, vehicle tracks, a pond, bushes.

Every layer is a full-scene field built from low-resolution value noise (cheap), blended onto the
grass by a soft coverage. The thermal field is built alongside with a temperature per surface:
sun-warmed soil and tracks above grass, water and shade below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tgmatl.survey.demo.exact import sincos
from tgmatl.survey.demo.noise import F32, blend, clip_window, darken, fbm, smooth_step, value_noise
from tgmatl.survey.demo.sprites import Sun, render_bush, shadow_patch

SHADOW_TINT = np.array([0.50, 0.54, 0.64], F32)  # shade is lit by blue sky only


@dataclass
class Terrain:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    heat: np.ndarray  # [H, W] float32 temperature on the thermal scale
    blocked: np.ndarray  # [H, W] bool: water and bushes, where no animal stands


def _paint(
    rgb: np.ndarray, heat: np.ndarray, alpha: np.ndarray, colour, temp: float
) -> None:
    """Blend a surface over the scene where ``alpha`` > 0, touching only those pixels (layers
    are sparse). ``colour`` is an RGB triple or a function of the pixel index giving [n, 3]."""
    idx = np.nonzero(alpha > F32(1 / 512))
    a = alpha[idx]
    c = colour(idx) if callable(colour) else colour
    rgb[idx] += a[:, None] * (c - rgb[idx])
    heat[idx] += a * (F32(temp) - heat[idx])


def render_terrain(
    rng: np.random.Generator, shape: tuple[int, int], gsd_m: float, sun: Sun
) -> Terrain:
    h, w = shape
    px = 1.0 / gsd_m  # pixels per metre
    small = min(h, w)

    # grass: a season tone, drier and lusher swathes, tussocks, blades
    season = rng.uniform(0.0, 1.0)
    lush = np.array([0.29, 0.40, 0.16], F32)
    dry = np.array([0.56, 0.53, 0.33], F32)
    swathe = fbm(rng, shape, [25 * px, 8 * px, 2.5 * px])
    dryness = np.clip(F32(0.1 + 0.5 * season) + F32(1.6) * (swathe - F32(0.5)), 0, 1)
    rgb = lush + dryness[..., None] * (dry - lush)
    tussock = value_noise(rng, shape, 0.22 * px)
    blades = value_noise(rng, shape, 1.6)
    speck = rng.random(shape, dtype=F32)
    rgb *= (F32(0.80) + F32(0.22) * blades + F32(0.14) * tussock + F32(0.08) * speck)[..., None]
    heat = F32(0.40 + 0.05 * season) + F32(0.06) * dryness

    # bare soil: patches where a second field runs high (trampled ground, molehills, gateways)
    soil_f = fbm(rng, shape, [14 * px, 4 * px, 1.2 * px])
    t = float(np.quantile(soil_f[::8, ::8], 1.0 - rng.uniform(0.02, 0.15)))
    soil_a = smooth_step(soil_f + F32(0.05) * (blades - F32(0.5)), t - 0.01, t + 0.03)
    soil = np.array([0.47, 0.38, 0.27], F32)
    _paint(rgb, heat, soil_a,
           lambda i: soil * (F32(0.78) + F32(0.28) * blades[i] + F32(0.12) * speck[i])[:, None],
           0.56)

    if rng.random() < 0.6:
        _tracks(rng, rgb, heat, shape, px, blades)

    blocked = np.zeros(shape, bool)
    if rng.random() < 0.35:
        _pond(rng, rgb, heat, blocked, shape, px)

    # bushes: shadows first, then the crowns over them
    for _ in range(int(rng.integers(0, 6))):
        r = min(rng.uniform(0.8, 2.2) * px, 0.12 * small)
        bush = render_bush(rng, r, sun)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, x0 = round(cy - bush.size / 2), round(cx - bush.size / 2)
        shade, oy, ox = shadow_patch(bush, sun)
        darken(rgb, heat, shade * F32(0.9), y0 + oy, x0 + ox, SHADOW_TINT, 0.08)
        blend(rgb, bush.rgb, bush.alpha, y0, x0)
        blend(heat, bush.heat, bush.alpha, y0, x0)
        _mark(blocked, bush.alpha > 0.2, y0, x0)
    return Terrain(rgb, heat, blocked)


def _mark(blocked: np.ndarray, mask: np.ndarray, y0: int, x0: int) -> None:
    win = clip_window(blocked.shape, y0, x0, mask.shape[0], mask.shape[1])
    if win is not None:
        blocked[win[0]] |= mask[win[1]]


def _tracks(
    rng: np.random.Generator, rgb: np.ndarray, heat: np.ndarray, shape: tuple[int, int],
    px: float, blades: np.ndarray,
) -> None:
    """A pair of wheel ruts along a gentle curve across the scene."""
    h, w = shape
    ang = rng.uniform(0, math.pi)
    ys, xs = np.ogrid[0:h, 0:w]
    xs = xs.astype(F32) - F32(w / 2)
    ys = ys.astype(F32) - F32(h / 2)
    s = xs * F32(math.cos(ang)) + ys * F32(math.sin(ang))
    t = -xs * F32(math.sin(ang)) + ys * F32(math.cos(ang))
    amp, period = rng.uniform(0, 6) * px, rng.uniform(40, 120) * px
    phase, offset = rng.uniform(0, 2 * math.pi), rng.uniform(-0.35, 0.35) * min(h, w)
    k = F32(2 * math.pi / period)
    sin, cos = sincos(k * s + F32(phase))  # not np.sin / np.cos: see exact.py
    centre = F32(offset) + F32(amp) * sin.astype(F32)
    slope = F32(amp) * k * cos.astype(F32)
    d = np.abs(t - centre) / np.sqrt(1 + slope * slope)  # distance across the track
    gauge, half = 0.85 * px, rng.uniform(0.15, 0.25) * px
    near = np.nonzero(d < F32(gauge + half + 2.0))  # only the track's own pixels from here on
    dn, bl = d[near], blades[near]
    rut = smooth_step(-np.abs(dn - F32(gauge)), -half - 1.0, -half + 1.0)
    rut *= smooth_step(bl, 0.12, 0.3)  # grass tufts break the ruts
    middle = F32(0.35) * smooth_step(-dn, -gauge + half, -gauge + half + 2.0)
    sub_rgb, sub_heat = rgb[near], heat[near]
    sub_rgb += middle[:, None] * (np.array([0.55, 0.53, 0.32], F32) - sub_rgb)  # trampled strip
    colour = np.array([0.58, 0.50, 0.38], F32) * (F32(0.85) + F32(0.25) * bl)[:, None]
    sub_rgb += rut[:, None] * (colour - sub_rgb)
    sub_heat += rut * (F32(0.55) - sub_heat)
    rgb[near], heat[near] = sub_rgb, sub_heat


def _pond(
    rng: np.random.Generator, rgb: np.ndarray, heat: np.ndarray, blocked: np.ndarray,
    shape: tuple[int, int], px: float,
) -> None:
    """An irregular pond with a muddy shore, computed only in its bounding window."""
    h, w = shape
    r = min(rng.uniform(4, 9) * px, 0.22 * min(h, w))
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    y0, y1 = max(int(cy - 1.6 * r), 0), min(int(cy + 1.6 * r) + 1, h)
    x0, x1 = max(int(cx - 1.6 * r), 0), min(int(cx + 1.6 * r) + 1, w)
    if y0 >= y1 or x0 >= x1:
        return
    win = (slice(y0, y1), slice(x0, x1))
    sub = (y1 - y0, x1 - x0)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    dist = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2).astype(F32) / F32(r)
    q = dist + F32(0.6) * (fbm(rng, sub, [0.8 * r, 0.3 * r]) - F32(0.5))
    shore = 0.7 * px / r
    water = smooth_step(-q, -1.0 - 0.01, -1.0 + 0.01)
    mud = smooth_step(-q, -1.0 - shore, -1.0 - 0.3 * shore) * (1 - water)
    depth = smooth_step(1 - q, 0.0, 0.5)
    deep = np.array([0.08, 0.14, 0.15], F32)
    shallow = np.array([0.24, 0.28, 0.20], F32)
    ripple = value_noise(rng, sub, 3.0)
    glint = smooth_step(fbm(rng, sub, [0.6 * r, 0.3 * r]), 0.5, 0.8)  # sky reflection
    colour = shallow + depth[..., None] * (deep - shallow)
    colour = colour * (F32(0.94) + F32(0.12) * ripple)[..., None] + F32(0.05) * glint[..., None]
    region, hregion = rgb[win], heat[win]
    mud_rgb = np.array([0.27, 0.23, 0.16], F32) * (F32(0.9) + F32(0.2) * ripple)[..., None]
    region += mud[..., None] * (mud_rgb - region)
    region += water[..., None] * (colour - region)
    hregion += mud * (F32(0.33) - hregion)
    hregion += water * (F32(0.24) + F32(0.03) * (1 - depth) - hregion)
    blocked[win] |= q < 1.05
