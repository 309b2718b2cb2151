"""Tiny surveys written in code, in every annotation layout the readers accept.

A :class:`Scene` holds a deterministic pixel pattern (so a tile can be compared with the scene
window it came from) and its boxes in scene pixels; the ``write_*`` functions lay scenes out as
AWIR, YOLO (flat or split), Pascal VOC or COCO. :func:`synthetic_survey` builds a larger AWIR survey
for the benchmark when the demo generator is not available.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine

Box = tuple[str, float, float, float, float]  # class name, xmin, xmax, ymin, ymax (scene px)


def pattern(height: int, width: int, bands: int, offset: int = 0) -> np.ndarray:
    """A [bands, h, w] uint8 pattern where every pixel of a small window is distinct enough."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [((x + 3 * y + 61 * b + offset) % 251).astype(np.uint8) for b in range(bands)]
    )


def write_raster(
    path: Path, array: np.ndarray, transform: Affine | None = None, crs: str | None = None
) -> Path:
    """Write [bands, h, w] (or [h, w]) as JPEG/PNG (Pillow) or GeoTIFF (rasterio) by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 2:
        array = array[None]
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        profile = {"driver": "GTiff", "width": array.shape[2], "height": array.shape[1],
                   "count": array.shape[0], "dtype": array.dtype.name}
        if transform is not None:
            profile["transform"] = transform
        if crs is not None:
            profile["crs"] = crs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # plain TIFFs are expected
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(array)
        return path
    img = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    if suffix in (".jpg", ".jpeg"):
        Image.fromarray(img).save(path, format="JPEG", quality=95)
    else:
        Image.fromarray(img).save(path, format="PNG")
    return path


@dataclass
class Scene:
    """One scene: ``name`` is its path without extension (``cow/s1`` for AWIR)."""

    name: str
    width: int
    height: int
    boxes: list[Box] = field(default_factory=list)
    suffix: str = ".png"
    bands: int = 3  # 1, 3, or 4 (RGB + thermal band)
    thermal_file: bool = False  # write <name>_thermal.png beside the scene
    transform: Affine | None = None
    crs: str | None = None
    offset: int = 0  # varies the pattern between scenes

    def pixels(self) -> np.ndarray:
        return pattern(self.height, self.width, self.bands, self.offset)

    def thermal(self) -> np.ndarray:
        return pattern(self.height, self.width, 1, self.offset + 100)[0]

    def write_image(self, path: Path) -> Path:
        path = path.with_suffix(self.suffix)
        write_raster(path, self.pixels(), self.transform, self.crs)
        if self.thermal_file:
            write_raster(path.with_name(f"{path.stem}_thermal.png"), self.thermal())
        return path


def yolo_line(class_id: int, box: Box, width: int, height: int) -> str:
    _, x0, x1, y0, y1 = box
    cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    return f"{class_id} {cx:.10f} {cy:.10f} {(x1 - x0) / width:.10f} {(y1 - y0) / height:.10f}"


def write_yolo_label(path: Path, scene: Scene, classes: list[str]) -> None:
    lines = [yolo_line(classes.index(b[0]), b, scene.width, scene.height) for b in scene.boxes]
    path.write_text("".join(f"{line}\n" for line in lines))


def write_awir(root: Path, classes: list[str], scenes: list[Scene]) -> Path:
    """``<Class>/<scene>.<ext>`` + ``<scene>.txt`` beside it, ``classes.txt`` at the root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for s in scenes:
        img = s.write_image(root / s.name)
        write_yolo_label(img.with_suffix(".txt"), s, classes)
    return root


def write_yolo(root: Path, classes: list[str], scenes: list[Scene], split: bool = False) -> Path:
    """Flat (``<scene>.<ext>`` + ``.txt`` in the root) or split (``images/`` + ``labels/``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for s in scenes:
        if split:
            s.write_image(root / "images" / s.name)
            label = (root / "labels" / s.name).with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
        else:
            label = s.write_image(root / s.name).with_suffix(".txt")
        write_yolo_label(label, s, classes)
    return root


def voc_xml(filename: str, scene: Scene, truncated: dict[int, int] | None = None) -> str:
    objs = []
    for i, (name, x0, x1, y0, y1) in enumerate(scene.boxes):
        t = (truncated or {}).get(i, 0)
        objs.append(
            f"<object><name>{name}</name><truncated>{t}</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{x0:g}</xmin><ymin>{y0:g}</ymin><xmax>{x1:g}</xmax>"
            f"<ymax>{y1:g}</ymax></bndbox></object>"
        )
    return (
        f"<annotation><filename>{filename}</filename><size><width>{scene.width}</width>"
        f"<height>{scene.height}</height><depth>{scene.bands}</depth></size>"
        + "".join(objs) + "</annotation>"
    )


def write_voc(root: Path, scenes: list[Scene], image_dir: str = "images",
              xml_dir: str = "annotations") -> Path:
    """HIT-UAV layout by default: ``images/<scene>.<ext>`` + ``annotations/<scene>.xml``."""
    for s in scenes:
        img = s.write_image(root / image_dir / s.name)
        xml = root / xml_dir / f"{s.name}.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        xml.write_text(voc_xml(img.name, s))
    return root


def write_coco(root: Path, classes: list[str], scenes: list[Scene],
               name: str = "annotations.json") -> Path:
    """``images/<scene>.<ext>`` + one COCO JSON in the root; category ids start at 1."""
    images, anns = [], []
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    for k, s in enumerate(scenes):
        img = s.write_image(root / "images" / s.name)
        images.append({"id": k + 10, "file_name": img.name, "width": s.width,
                       "height": s.height})
        for cls, x0, x1, y0, y1 in s.boxes:
            anns.append({"id": len(anns) + 1, "image_id": k + 10,
                         "category_id": classes.index(cls) + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0})
    (root / name).write_text(json.dumps({"images": images, "annotations": anns,
                                         "categories": cats}))
    return root


def synthetic_survey(
    root: Path,
    n_scenes: int = 30,
    width: int = 1500,
    height: int = 1000,
    per_scene: int = 8,
    classes: tuple[str, ...] = ("cow", "deer", "horse"),
    seed: int = 0,
    thermal_file: bool = True,
) -> Path:
    """A random AWIR survey (JPEG scenes with noise texture, thermal files), for benchmarks."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    for i in range(n_scenes):
        folder = classes[i % len(classes)]
        path = root / folder / f"scene_{i:03d}.jpg"
        img = rng.integers(0, 256, (3, height, width), dtype=np.uint8)
        write_raster(path, img)
        if thermal_file:
            write_raster(path.with_name(f"{path.stem}_thermal.tif"),
                         rng.integers(0, 256, (height, width), dtype=np.uint8))
        lines = []
        for _ in range(per_scene):
            w, h = rng.uniform(20, 90, 2)
            x0, y0 = rng.uniform(5, width - w - 5), rng.uniform(5, height - h - 5)
            c = int(rng.integers(len(classes)))
            lines.append(yolo_line(c, ("", x0, x0 + w, y0, y0 + h), width, height))
        path.with_suffix(".txt").write_text("".join(f"{line}\n" for line in lines))
    return root
