"""Elementary functions built from ``+ - * /``, ``sqrt``, ``floor``, ``frexp`` and ``ldexp`` only.

Why: numpy's ``exp``, ``sin``, ``cos``, ``arctan2`` and ``power`` dispatch to SIMD kernels (AVX-512
SVML on some CPUs, AVX2 or scalar code on others) that round differently in the last bit, and
BLAS (``@``, ``np.dot``, ``np.linalg.norm``) picks a kernel per CPU too. A last-bit difference in
a float32 field flips some uint8 pixels of a 50-million-pixel survey, so the demo's bytes would
depend on the machine. The operations used here are correctly rounded by IEEE 754 on every SIMD
path (and numpy never fuses them), so these functions give the same bits everywhere. They work in
float64 and are accurate to ~1e-15 relative, far below what a pixel can show.
"""

from __future__ import annotations

import numpy as np

F64 = np.float64
_LN2 = 0.6931471805599453
_LOG2E = 1.4426950408889634
_PI_2_HI = 1.5707963267341256  # pi/2 split in two (Cody-Waite): HI * k is exact for |k| < 2**20
_PI_2_LO = 6.077100506506192e-11
_SQRT1_2 = 0.7071067811865476
_2_PI = 0.6366197723675814  # 2 / pi


def exp2(x: np.ndarray) -> np.ndarray:
    """``2 ** x`` (float64); saturates outside [-1000, 1000]."""
    x = np.clip(np.asarray(x, F64), -1000.0, 1000.0)
    n = np.floor(x + 0.5)
    t = (x - n) * _LN2  # |t| <= ln2 / 2
    p = np.ones_like(t)
    for k in range(13, 0, -1):  # Taylor series of e^t to t^13 / 13!, Horner (error < 1e-16)
        p = 1.0 + p * t / k
    return np.ldexp(p, n.astype(np.int32))


def exp(x: np.ndarray) -> np.ndarray:
    return exp2(np.asarray(x, F64) * _LOG2E)


def log2(x: np.ndarray) -> np.ndarray:
    """``log2(x)`` for x > 0 (float64)."""
    m, e = np.frexp(np.asarray(x, F64))  # x = m * 2**e, m in [0.5, 1)
    low = m < _SQRT1_2
    m = np.where(low, m * 2.0, m)
    e = np.where(low, e - 1, e).astype(F64)
    s = (m - 1.0) / (m + 1.0)  # ln m = 2 atanh s, |s| <= 0.1716
    s2 = s * s
    p = np.zeros_like(s)
    for k in range(21, 1, -2):  # 2 (s + s^3/3 + ... + s^21/21), error < 1e-19
        p = (p + 1.0 / k) * s2
    return e + 2.0 * s * (1.0 + p) * _LOG2E


def power(x: np.ndarray, p: float) -> np.ndarray:
    """``x ** p`` for x > 0 (float64)."""
    return exp2(log2(x) * p)


def sincos(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sin x, cos x)`` (float64) for |x| < 1e6."""
    x = np.asarray(x, F64)
    k = np.floor(x * _2_PI + 0.5)
    r = (x - k * _PI_2_HI) - k * _PI_2_LO  # |r| <= pi/4
    r2 = r * r
    s = np.ones_like(r)
    c = np.ones_like(r)
    for n in range(17, 1, -2):  # Taylor to r^17 and r^18, error < 1e-17 on |r| <= pi/4
        s = 1.0 - s * r2 / (n * (n - 1))
    for n in range(18, 0, -2):
        c = 1.0 - c * r2 / (n * (n - 1))
    s = s * r
    q = k.astype(np.int64) % 4  # quadrant
    sin = np.choose(q, [s, c, -s, -c])
    cos = np.choose(q, [c, -s, -c, s])
    return sin, cos


def gauss(x: np.ndarray) -> np.ndarray:
    """``exp(-x**2)`` (float64)."""
    x = np.asarray(x, F64)
    return exp(-(x * x))
