"""Scene reads through rasterio (JPEG, PNG, GeoTIFF; 1, 3 or 4 bands), windows, georeference.

A *scene* is one image file, optionally with a co-registered thermal band:

- a single-band file ``<scene>_thermal.<ext>`` beside the scene (any of :data:`RASTER_SUFFIXES`),
  of the same width and height; or
- the 4th band of a 4-band scene (bands 1-3 are RGB).

A 1-band scene is a single-band survey (e.g. HIT-UAV thermal frames): its one band *is* the image,
and it has no separate thermal band unless a ``_thermal`` file sits beside it.

Image bands must be 8-bit (samples are 8-bit PNG, and rescaling 16-bit colour is a choice we do
not make silently); a thermal band may be uint8 or uint16 and keeps its dtype.

Georeference: a scene is georeferenced when it has a CRS or a non-identity transform. A window's
transform is the scene transform translated by the window offset
(``rasterio.windows.transform``, i.e. ``scene_transform * Affine.translation(col_off, row_off)``).
Plain JPEG/PNG have neither; rasterio's ``NotGeoreferencedWarning`` is expected there and muted.

Every failure to open or decode a file is an :class:`~tgmatl.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.windows
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine

from tgmatl.errors import InputError

RASTER_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
THERMAL_TAG = "_thermal"
IMAGE_DTYPES = ("uint8",)
THERMAL_DTYPES = ("uint8", "uint16")


def is_raster(path: Path) -> bool:
    return path.suffix.lower() in RASTER_SUFFIXES


def is_thermal_file(path: Path) -> bool:
    """True for ``<scene>_thermal.<ext>``: a thermal companion, never a scene of its own."""
    return is_raster(path) and path.stem.endswith(THERMAL_TAG)


def find_thermal(image_path: Path) -> Path | None:
    """The ``<scene>_thermal.<ext>`` file beside ``image_path``, if any (two of them: error)."""
    stem = image_path.stem + THERMAL_TAG
    found = sorted(
        p for p in image_path.parent.glob(f"{glob_escape(stem)}.*")
        if p.suffix.lower() in RASTER_SUFFIXES
    )
    if len(found) > 1:
        names = ", ".join(str(p) for p in found)
        raise InputError(f"{image_path}: more than one thermal file beside it ({names})")
    return found[0] if found else None


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk every complete PNG ends with


def _check_png_complete(path: Path) -> None:
    # GDAL decodes a PNG cut short without any error (the missing rows come back as garbage), so
    # a truncated PNG is caught here, by its missing end chunk.
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, 2)
            f.seek(max(f.tell() - len(_PNG_END), 0))
            tail = f.read()
    except OSError as exc:
        raise InputError(f"{path}: image does not open: {exc}") from None
    if head == b"\x89PNG\r\n\x1a\n" and tail != _PNG_END:  # not a PNG at all: GDAL says so
        raise InputError(f"{path}: image does not decode: PNG is truncated (no IEND chunk)")


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.DatasetReader]:
    """Open ``path`` read-only; an unreadable file becomes an ``InputError`` naming it."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        _check_png_complete(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(path)
        except RasterioError as exc:
            raise InputError(f"{path}: image does not open: {exc}") from None
    try:
        yield src
    finally:
        src.close()


def _read(src: rasterio.DatasetReader, path: Path, **kwargs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return src.read(**kwargs)
        except RasterioError as exc:
            # rasterio's own message says "see previous exception"; the cause holds GDAL's reason.
            cause = exc.__cause__ or exc.__context__
            why = f"{exc}: {cause}" if cause is not None else str(exc)
            raise InputError(f"{path}: image does not decode: {why}") from None


@dataclass(frozen=True)
class SceneInfo:
    """Header facts of a scene (no pixels read)."""

    path: Path
    width: int
    height: int
    count: int  # bands in the image file
    dtype: str
    thermal_path: Path | None  # separate thermal file, or None
    thermal_dtype: str | None  # dtype of the thermal band (file or 4th band), None without one
    transform: tuple[float, float, float, float, float, float] | None  # a, b, c, d, e, f
    crs: str | None

    @property
    def image_bands(self) -> int:
        """Bands of the image proper: 3 (RGB) for 3/4-band scenes, 1 for single-band ones."""
        return 1 if self.count == 1 else 3

    @property
    def has_thermal(self) -> bool:
        return self.thermal_dtype is not None

    def window_transform(self, col_off: int, row_off: int) -> tuple[float, ...] | None:
        """The transform of a window at (col_off, row_off), or None when not georeferenced."""
        if self.transform is None:
            return None
        # = rasterio.windows.transform(window, transform), without affine's deprecated `*`
        return tuple(Affine(*self.transform) @ Affine.translation(col_off, row_off))[:6]


def scene_info(path: str | Path, thermal_path: str | Path | None = None) -> SceneInfo:
    """Read the headers of a scene and its thermal file; check bands, dtypes and sizes."""
    path = Path(path)
    with open_raster(path) as src:
        width, height, count = src.width, src.height, src.count
        dtypes = set(src.dtypes)
        transform, crs = src.transform, src.crs
        band_dtypes = list(src.dtypes)
    if count not in (1, 3, 4):
        raise InputError(f"{path}: {count} bands; expected 1 (single band), 3 (RGB) or 4 (RGB+T)")
    image_dtypes = set(band_dtypes[:3]) if count >= 3 else dtypes
    if not image_dtypes <= set(IMAGE_DTYPES):
        raise InputError(
            f"{path}: image bands are {sorted(image_dtypes)}; expected 8-bit "
            "(convert the survey to uint8 first)"
        )
    thermal_dtype = None
    if count == 4:
        thermal_dtype = band_dtypes[3]
        if thermal_dtype not in THERMAL_DTYPES:
            raise InputError(f"{path}: thermal band 4 is {thermal_dtype}; expected uint8|uint16")
    tpath = Path(thermal_path) if thermal_path is not None else None
    if tpath is not None:
        if count == 4:
            raise InputError(
                f"{path}: has a 4th (thermal) band and a thermal file {tpath}; keep one"
            )
        with open_raster(tpath) as tsrc:
            if tsrc.count != 1:
                raise InputError(f"{tpath}: thermal file has {tsrc.count} bands; expected 1")
            if (tsrc.width, tsrc.height) != (width, height):
                raise InputError(
                    f"{tpath}: thermal size {tsrc.width}x{tsrc.height} does not match image "
                    f"{path} size {width}x{height}"
                )
            thermal_dtype = tsrc.dtypes[0]
        if thermal_dtype not in THERMAL_DTYPES:
            raise InputError(f"{tpath}: thermal band is {thermal_dtype}; expected uint8|uint16")
    georef = crs is not None or not transform.is_identity
    return SceneInfo(
        path=path,
        width=width,
        height=height,
        count=count,
        dtype=band_dtypes[0],
        thermal_path=tpath,
        thermal_dtype=thermal_dtype,
        transform=tuple(transform)[:6] if georef else None,
        crs=crs.to_string() if crs is not None else None,
    )


class SceneReader:
    """Windowed reads of one scene (image + thermal band), zero-padded past the scene border.

    Use as a context manager; :meth:`read` returns ``(image[bands, h, w], thermal[h, w] | None)``.
    """

    def __init__(self, info: SceneInfo):
        self.info = info
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> SceneReader:
        self._src = self._stack.enter_context(open_raster(self.info.path))
        self._tsrc = None
        if self.info.thermal_path is not None:
            self._tsrc = self._stack.enter_context(open_raster(self.info.thermal_path))
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def read(
        self, col_off: int, row_off: int, width: int, height: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        info = self.info
        # Read only the part inside the scene, then pad: cheaper than a boundless (VRT) read.
        c0, r0 = max(col_off, 0), max(row_off, 0)
        c1, r1 = min(col_off + width, info.width), min(row_off + height, info.height)
        if c1 <= c0 or r1 <= r0:
            raise ValueError(f"window {col_off},{row_off},{width},{height} misses the scene")
        win = rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)
        bands = [1] if info.count == 1 else [1, 2, 3]
        if info.count == 4:
            bands = [1, 2, 3, 4]
        data = _read(self._src, info.path, indexes=bands, window=win)
        thermal = None
        if info.count == 4:
            data, thermal = data[:3], data[3]
        elif self._tsrc is not None:
            thermal = _read(self._tsrc, info.thermal_path, indexes=1, window=win)
        pad = ((r0 - row_off, row_off + height - r1), (c0 - col_off, col_off + width - c1))
        if any(p for pair in pad for p in pair):
            data = np.pad(data, ((0, 0), *pad))
            if thermal is not None:
                thermal = np.pad(thermal, pad)
        return data, thermal


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` ([bands, h, w] with 1 or 3 bands, or [h, w]) as PNG.

    uint8 -> 8-bit PNG; uint16 (thermal) -> 16-bit greyscale PNG. Fast compression: tiles are
    intermediate data, and PNG is lossless at every level.
    """
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=1)


def read_png(path: str | Path) -> np.ndarray:
    """Read a PNG written by :func:`write_png` back as [bands, h, w]."""
    with Image.open(path) as im:
        arr = np.asarray(im)
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
