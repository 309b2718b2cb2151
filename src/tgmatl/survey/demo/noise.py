"""Cheap procedural textures and patch compositing for the synthetic survey.

Textures are value noise: a coarse grid of random values upsampled with smoothstep weights.
Generating at grid resolution and upsampling separably keeps a 1500×1000 field at a few
milliseconds, which is what makes whole scenes cheap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tgmatl.survey.demo.exact import F64, power

F32 = np.float32


def _axis(n: int, cell: float) -> tuple[np.ndarray, np.ndarray]:
    pos = (np.arange(n, dtype=F32) + F32(0.5)) / F32(cell)
    i0 = np.floor(pos).astype(np.intp)
    f = pos - i0
    return i0, f * f * (F32(3.0) - F32(2.0) * f)


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features about ``cell`` pixels across."""
    h, w = shape
    cell = max(float(cell), 1.0)
    grid = rng.random((int(h / cell) + 2, int(w / cell) + 2), dtype=F32)
    iy, fy = _axis(h, cell)
    ix, fx = _axis(w, cell)
    rows = grid[iy] * (1 - fy)[:, None] + grid[iy + 1] * fy[:, None]
    return rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx


def fbm(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cells: Sequence[float],
    gains: Sequence[float] | None = None,
) -> np.ndarray:
    """Sum of value-noise octaves, rescaled to mean ~0.5 and range ~[0, 1]."""
    gains = gains if gains is not None else [0.5**i for i in range(len(cells))]
    out = np.zeros(shape, F32)
    for cell, gain in zip(cells, gains, strict=True):
        out += F32(gain) * (value_noise(rng, shape, cell) - F32(0.5))
    return out / F32(sum(gains)) + F32(0.5)


def smooth_step(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - F32(lo)) / F32(hi - lo), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(F32)


def ellipse_alpha(
    x: np.ndarray, y: np.ndarray, a: float, b: float, power_: float = 2.0
) -> np.ndarray:
    """Anti-aliased coverage of the superellipse |x/a|^p + |y/b|^p <= 1 (about 1 px soft edge)."""
    # exact.power, not ``**``: numpy's power rounds differently per CPU (see exact.py)
    ax = (np.abs(x) / F32(a) + F32(1e-6)).astype(F64)
    by = (np.abs(y) / F32(b) + F32(1e-6)).astype(F64)
    axp, byp = power(ax, power_), power(by, power_)
    s = axp + byp
    f = power(s, 1.0 / power_)
    # distance to the outline ~ (f - 1) / |grad f|; grad of the p-norm, written out
    gx = axp / ax / a
    gy = byp / by / b
    grad = np.sqrt(gx * gx + gy * gy) * (f / s) + 1e-6
    return np.clip(0.5 - (f - 1) / grad, 0.0, 1.0).astype(F32)


def clip_window(
    shape: tuple[int, int], y0: int, x0: int, h: int, w: int
) -> tuple[tuple[slice, slice], tuple[slice, slice]] | None:
    """Scene and patch slices for a patch with its top-left at (y0, x0); None if fully outside."""
    H, W = shape
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y0 + h, H), min(x0 + w, W)
    if sy0 >= sy1 or sx0 >= sx1:
        return None
    scene = (slice(sy0, sy1), slice(sx0, sx1))
    patch = (slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0))
    return scene, patch


def blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, y0: int, x0: int) -> None:
    """Alpha-composite a patch (``src`` [h,w] or [h,w,c], ``alpha`` [h,w]) into ``dst`` in place."""
    win = clip_window(dst.shape[:2], y0, x0, alpha.shape[0], alpha.shape[1])
    if win is None:
        return
    s, p = win
    a = alpha[p]
    if dst.ndim == 3:
        a = a[..., None]
    dst[s] += a * (src[p] - dst[s])


def darken(
    rgb: np.ndarray, heat: np.ndarray, shade: np.ndarray, y0: int, x0: int,
    tint: np.ndarray, heat_drop: float,
) -> None:
    """Cast a shadow patch (coverage ``shade``) on the scene: darker, bluish, cooler."""
    win = clip_window(rgb.shape[:2], y0, x0, shade.shape[0], shade.shape[1])
    if win is None:
        return
    s, p = win
    a = shade[p]
    rgb[s] *= 1 - a[..., None] * (1 - tint)
    heat[s] -= F32(heat_drop) * a
