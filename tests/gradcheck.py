"""Numerical gradients for the loss tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def central_differences(f: Callable[[np.ndarray], float], x: np.ndarray,
                        h: float = 1e-6) -> np.ndarray:
    """``df/dx`` by central differences, one coordinate at a time (``x`` float64)."""
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += h
        down[idx] -= h
        num[idx] = (float(f(up)) - float(f(down))) / (2 * h)
    return num
