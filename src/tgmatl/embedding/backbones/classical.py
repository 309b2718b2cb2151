"""``family: classical``: hand-crafted descriptors, an offline baseline (not a ViT).

Per sample image (each view of ``embed.bands``, all of its bands), resized to ``image_size``
square (anti-aliased), three blocks of scikit-image descriptors:

- ``hog``: histograms of oriented gradients of the luminance, 9 orientations, on an 8 x 8 and a
  4 x 4 cell grid (2 x 2 cell blocks, L2-Hys): shape, and *where* edges lie, which is how large
  and how elongated the object in the middle of the window is;
- ``lbp``: uniform local binary patterns (8 neighbours at radius 1, 16 at radius 2), histograms
  over the whole image, its centre and its four quadrants: fur, coat and ground texture;
- ``colour``: per band mean, sd, 10/50/90th percentiles of the whole image and of its centre
  (the middle half), and the band's mean on a 4 x 4 grid: coat colour and pattern, thermal.

No weights, no randomness, no network: the same images give the same vectors. The features are
standardised over the survey's samples (mean 0, sd 1 each; labels are never read), and each block
is scaled by 1/sqrt(its width) so that the three blocks weigh the same. Last, each view's vector
is rotated onto its first ``components`` principal axes over the survey's samples (PCA, labels
never read; distances kept up to the variance left out, which the metadata records): the
descriptor's ~3000 dimensions are mostly redundant, and the projection's first layer, the
largest cost of training on this backbone, shrinks in proportion. It answers "does a ViT
beat hand-crafted features on this survey?"; its Parquet metadata says ``family: classical``,
``offline_baseline: true`` and ``not_a_vit: true``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from tgmatl.config import BackboneParams
from tgmatl.errors import InputError
from tgmatl.io import write_parquet

log = logging.getLogger(__name__)

GRID = 8  # HOG cells per side at the fine scale
MIN_SIDE = 4 * GRID  # two pixels per fine HOG cell of the middle half
ORIENTATIONS = 9
LBP = ((8, 1.0), (16, 2.0))  # (neighbours, radius)
COLOUR_GRID = 4
PERCENTILES = (10, 50, 90)
HIST_LEVELS = 4  # foreground colour histogram: levels per band
LABEL = "not a ViT: offline baseline"


def load_image(path: str | Path, sample_id: str) -> np.ndarray:
    """A sample image as float32 ``(H, W, C)`` in [0, 1] (8- or 16-bit PNG, any band count)."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    img = arr.astype(np.float32) / np.float32(scale)
    img = img[..., None] if img.ndim == 2 else img
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(
            f"sample {sample_id}: {path} is {w}x{h} px, too small for the classical descriptors "
            f"(at least {MIN_SIDE} px a side: two pixels per cell of the {GRID} x {GRID} HOG grid "
            "on its middle half)"
        )
    return img


def _luminance(img: np.ndarray) -> np.ndarray:
    if img.shape[-1] >= 3:
        return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    return img[..., 0]


def _regions(side: int) -> list[tuple[slice, slice]]:
    """Whole image, its centre (the middle half) and its four quadrants."""
    h, q = side // 2, side // 4
    whole, centre = (slice(None), slice(None)), (slice(q, side - q), slice(q, side - q))
    quads = [(slice(r, r + h), slice(c, c + h)) for r in (0, h) for c in (0, h)]
    return [whole, centre, *quads]


def describe(img: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """The descriptor blocks of one image (``(H, W, C)`` float in [0, 1]), each computed on two
    fields of view resized to ``size``: the whole window (context) and its middle half (where
    a recentred target is, at twice the resolution)."""
    from skimage.transform import resize

    h, w = img.shape[:2]
    views = {"window": (img, (GRID // 2,)),
             "centre": (img[h // 4: h - h // 4, w // 4: w - w // 4], (GRID, GRID // 2))}
    out: dict[str, list[np.ndarray]] = {}
    for part, grids in views.values():
        x = resize(part, (size, size, part.shape[-1]), order=1, anti_aliasing=True,
                   preserve_range=True).astype(np.float64)
        for k, v in _blocks(x, grids).items():
            out.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in out.items()}


def _blocks(x: np.ndarray, grids: tuple[int, ...]) -> dict[str, np.ndarray]:
    from skimage.feature import hog, local_binary_pattern

    size = x.shape[0]
    grey = _luminance(x)
    hogs = [
        hog(grey, orientations=ORIENTATIONS, pixels_per_cell=(size // g, size // g),
            cells_per_block=(2, 2), block_norm="L2-Hys", feature_vector=True)
        for g in grids
    ]
    codes8 = np.round(grey * 255).astype(np.uint8)  # LBP compares integer levels
    lbps = []
    for points, radius in LBP:
        codes = local_binary_pattern(codes8, points, radius, method="uniform")
        for rows, cols in _regions(size):
            hist = np.bincount(codes[rows, cols].astype(np.int64).ravel(), minlength=points + 2)
            lbps.append(hist / hist.sum())
    colour: list[float] = []
    centre = _regions(size)[1]
    cell = size // COLOUR_GRID
    for b in range(x.shape[-1]):
        band = x[..., b]
        for part in (band, band[centre]):
            colour.extend([part.mean(), part.std(), *np.percentile(part, PERCENTILES)])
        grid = band[: cell * COLOUR_GRID, : cell * COLOUR_GRID]
        colour.extend(grid.reshape(COLOUR_GRID, cell, COLOUR_GRID, cell).mean(axis=(1, 3)).ravel())
        colour.append(float(band[centre].mean() - band.mean()))  # centre against surround
    colour.extend(_foreground_colours(x))
    return {"hog": np.concatenate(hogs), "orient": _orientations(grey),
            "lbp": np.concatenate(lbps), "colour": np.asarray(colour, np.float64),
            "shape": _silhouette(x)}


def _orientations(grey: np.ndarray) -> np.ndarray:
    """Gradient-energy histograms of the centre (middle half) and middle (middle 3/4), not
    normalised: their total grows with the outline of what is there, their peak follows its
    axis (the box's size and squareness, in features a linear head can read)."""
    gy, gx = np.gradient(grey)
    mag = np.hypot(gx, gy)
    ang = np.mod(np.arctan2(gy, gx), np.pi)
    bins = np.minimum((ang / np.pi * ORIENTATIONS).astype(np.int64), ORIENTATIONS - 1)
    side = grey.shape[0]
    out = []
    for frac in (4, 8):
        q = side // frac
        sl = (slice(q, side - q), slice(q, side - q))
        out.append(np.bincount(bins[sl].ravel(), mag[sl].ravel(), ORIENTATIONS))
    return np.concatenate(out) / side


def _contrast(x: np.ndarray) -> np.ndarray:
    """Per pixel, the colour distance to the window's dominant colour (its median: the ground)."""
    ground = np.median(x.reshape(-1, x.shape[-1]), axis=0)
    return np.sqrt(((x - ground) ** 2).sum(axis=-1))


def _foreground_colours(x: np.ndarray) -> np.ndarray:
    """Colour histogram (4 levels a band, up to 3 bands) of what stands out from the ground,
    weighted by that contrast: the coat's colours rather than the grass's."""
    bands = x[..., :3]
    levels = np.minimum((np.clip(bands, 0, 1) * HIST_LEVELS).astype(np.int64), HIST_LEVELS - 1)
    code = np.zeros(x.shape[:2], np.int64)
    for b in range(bands.shape[-1]):
        code = code * HIST_LEVELS + levels[..., b]
    c = _contrast(x)
    w = np.clip(c - np.percentile(c, 75), 0, None)
    hist = np.bincount(code.ravel(), w.ravel(), HIST_LEVELS ** bands.shape[-1])
    return hist / (hist.sum() + 1e-9)


def _silhouette(x: np.ndarray) -> np.ndarray:
    """Moments of the colour contrast to the window's dominant colour (its median, the ground),
    weighted towards the centre: mass, extent along x and y, cross moment, and their ratio."""
    side = x.shape[0]
    contrast = _contrast(x)
    c = np.arange(side) + 0.5 - side / 2
    weight = np.exp(-(c[:, None] ** 2 + c[None, :] ** 2) / (2 * (side / 5) ** 2))
    m = np.clip(contrast - np.percentile(contrast, 50), 0, None) * weight
    mass = m.sum() + 1e-9
    yy, xx = np.meshgrid(c, c, indexing="ij")
    my, mx = (m * yy).sum() / mass, (m * xx).sum() / mass
    vx = (m * (xx - mx) ** 2).sum() / mass
    vy = (m * (yy - my) ** 2).sum() / mass
    vxy = (m * (xx - mx) * (yy - my)).sum() / mass
    sx, sy = np.sqrt(vx) / side, np.sqrt(vy) / side
    return np.array([mass / side**2, sx, sy, sx * sy, abs(np.log((sx + 1e-6) / (sy + 1e-6))),
                     vxy / side**2, mx / side, my / side])


def standardise(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """``(N, D)`` float32: each feature to mean 0, sd 1 over the samples (constant ones to 0),
    each block scaled by 1/sqrt(its width), blocks concatenated in order."""
    out = []
    for x in blocks.values():
        sd = x.std(axis=0)
        z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        out.append(z / np.sqrt(x.shape[1]))
    return np.concatenate(out, axis=1).astype(np.float32)


def principal_axes(x: np.ndarray, components: int) -> tuple[np.ndarray, float]:
    """``(N, k)`` float32 scores of the centred ``x`` on its first ``k = min(components, N, D)``
    principal axes, and the share of the variance they keep. Each axis' sign is fixed (its
    largest loading positive) so that the output does not depend on the LAPACK build."""
    xc = np.asarray(x, np.float64)
    xc = xc - xc.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(components, len(s))
    axes = vt[:k]
    flip = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(flip == 0, 1.0, flip)[:, None]
    total = float(np.sum(s ** 2))
    kept = float(np.sum(s[:k] ** 2) / total) if total > 0 else 1.0
    return (xc @ axes.T).astype(np.float32), kept


def embed_classical(
    views, out: str | Path, name: str, backbone: BackboneParams, bands: str, row_group_size: int,
    progress: bool = True,
) -> dict[str, float]:
    """Stage ``embed`` for ``family: classical``: descriptors of every view, to ``out``.

    ``views``: :class:`tgmatl.embedding.extraction.Views`; the vectors of a sample's views are
    concatenated (``rgb+thermal``: ``[rgb | thermal]``), as for the encoders.
    """
    from tqdm import tqdm

    size, components = backbone.image_size, backbone.components
    assert size is not None and components is not None
    start = time.perf_counter()
    per_view, kept, raw_dim = [], [], 0
    for paths in views.paths:
        blocks: dict[str, list[np.ndarray]] = {}
        for sid, path in tqdm(list(zip(views.sample_ids, paths, strict=True)),
                              desc=f"embed {name}", unit="img", disable=not progress):
            for k, v in describe(load_image(path, sid), size).items():
                blocks.setdefault(k, []).append(v)
        z = standardise({k: np.stack(v) for k, v in blocks.items()})
        raw_dim += z.shape[1]
        z, share = principal_axes(z, components)
        per_view.append(z)
        kept.append(share)
    x = np.concatenate(per_view, axis=1)
    n, dim = x.shape
    widths = {k: int(np.stack(v).shape[1]) for k, v in blocks.items()}
    meta = {
        "backbone": name,
        "family": "classical",
        "weights": "none",
        "weights_kind": "none: hand-crafted descriptors (scikit-image HOG, LBP, colour statistics)",
        "untrained": "false",
        "offline_baseline": "true",
        "not_a_vit": "true",
        "label": LABEL,
        "image_size": str(size),
        "bands": bands,
        "views": ",".join(views.names),
        "blocks": json.dumps(widths),
        "standardised": "per feature over this survey's samples (mean 0, sd 1), each block / "
                        "sqrt(width)",
        "descriptor_dim": str(raw_dim),
        "components": str(components),
        "pca": "per view: scores on the first principal axes over this survey's samples",
        "variance_kept": ",".join(f"{v:.4f}" for v in kept),
        "dim": str(dim),
        "n_samples": str(n),
        "skimage_version": _skimage_version(),
    }
    table = pa.table({
        "sample_id": pa.array(views.sample_ids, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), dim),
    }).replace_schema_metadata(meta)
    write_parquet(out, table, row_group_size=row_group_size, compression="zstd")
    seconds = time.perf_counter() - start
    log.info("%s: %d samples -> %s (classical descriptors, %d-d on %d principal axes keeping "
             "%s of the variance, %.1f img/s; %s)", name, n, out, raw_dim, dim,
             "/".join(f"{v:.1%}" for v in kept), n / seconds, LABEL)
    return {"n_samples": n, "dim": dim, "seconds": seconds, "images_per_s": n / seconds}


def _skimage_version() -> str:
    import skimage

    return skimage.__version__
