"""Deterministic raster and label writers (rasterio / GDAL, no timestamps, no sidecars)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

# PAM off: GDAL must not drop .aux.xml sidecars next to the images
_ENV = {"GDAL_PAM_ENABLED": "NO"}


def _write(path: Path, bands: np.ndarray, driver: str, **kw) -> None:
    count, h, w = bands.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(**_ENV), rasterio.open(
            path, "w", driver=driver, width=w, height=h, count=count, dtype="uint8", **kw
        ) as dst:
            dst.write(bands)


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    _write(path, np.moveaxis(rgb, -1, 0), "JPEG", QUALITY=str(quality))


def write_png(path: Path, bands: np.ndarray) -> None:
    """``bands`` [H, W, C]; 4 bands are RGB + thermal (PNG calls the 4th band alpha)."""
    _write(path, np.moveaxis(bands, -1, 0), "PNG", ZLEVEL="6")


def write_geotiff(
    path: Path, bands: np.ndarray, transform: Affine | None, crs: CRS | None,
    names: tuple[str, ...],
) -> None:
    """``bands`` [H, W, C] uint8 as a deflate GeoTIFF; 3 or 4 bands are RGB (+ thermal, not
    alpha); ``transform``/``crs`` None writes a plain TIFF (thermal of a non-georeferenced scene).
    """
    data = np.moveaxis(bands, -1, 0) if bands.ndim == 3 else bands[None]
    kw: dict = {"compress": "deflate", "predictor": 2}
    if data.shape[0] >= 3:
        kw["photometric"] = "RGB"
    if data.shape[0] == 4:
        kw["alpha"] = "UNSPECIFIED"  # the 4th band is thermal, not transparency
    if transform is not None:
        kw["transform"], kw["crs"] = transform, crs
    count, h, w = data.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.Env(**_ENV), rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=count, dtype="uint8", **kw
        ) as dst:
            dst.write(data)
            for i, name in enumerate(names, start=1):
                dst.set_band_description(i, name)


def yolo_lines(boxes: list[tuple[int, int, int, int, int]], width: int, height: int) -> str:
    """``class_id cx cy w h`` per box, normalised to the image size, 6 decimals."""
    out = []
    for cid, x0, y0, x1, y1 in boxes:
        out.append(
            f"{cid} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
            f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}"
        )
    return "\n".join(out) + "\n"
