"""Annotation readers: AWIR folders, YOLO, Pascal VOC and COCO -> one box table.

:func:`read_survey` reads ``data.root`` in the layout named by ``data.format`` and returns a
:class:`Survey`: the scenes, the boxes (one table for every format) and the class list.

Accepted layouts (paths relative to ``data.root``):

- ``awir``: ``<Class>/<scene>.<ext>`` (one level of folders) with a YOLO label ``<scene>.txt``
  beside each image and ``classes.txt`` at the root (one class name a line; id = line index).
- ``yolo``: either *flat*, ``<scene>.<ext>`` + ``<scene>.txt`` directly in the root, or *split*,
  ``images/**/<scene>.<ext>`` with ``labels/**/<scene>.txt`` at the mirrored path (Ultralytics'
  layout); ``classes.txt`` at the root in both. The split layout is used when ``images/`` exists.
- ``voc``: Pascal VOC ``*.xml`` anywhere under the root; each names its image in ``<filename>``,
  found next to the XML or in a sibling ``images/`` or ``JPEGImages/`` folder (HIT-UAV:
  ``annotations/*.xml`` + ``images/*.jpg``). Coordinates are read as written, as pixel edges
  (HIT-UAV writes 0..W; no 1-based shift).
- ``coco``: exactly one COCO ``*.json`` in the root; ``file_name`` relative to the root or to
  ``images/``; ``bbox`` is ``[x, y, w, h]`` in pixels. ``iscrowd: 1`` regions are dropped, counted.

``<ext>`` is any of jpg, jpeg, png, tif, tiff; ``<scene>_thermal.<ext>`` files are thermal
companions (see :mod:`tgmatl.survey.raster`), never scenes.

Class order: ``classes.txt`` order (awir, yolo), the ``categories`` order (coco), sorted names
(voc); classes in ``data.ignore_classes`` are removed from the list and their boxes dropped and
counted.

Bad input, each naming the file (and line or object):

- errors (:class:`InputError`): image that does not open, missing label file, malformed line, class
  id not in ``classes.txt``, unknown COCO category or image id, image size differing from the size
  the annotation declares, thermal size differing from the image, no image found at all, no
  target left at all;
- counted warnings: empty label file / image without objects (``no_targets``: legitimately a
  scene without targets), box of zero area (``zero_area``, dropped), box wholly outside the image
  (``outside_image``, dropped), box partly outside (``clipped_to_image``: clipped to the image and
  flagged ``truncated``), label without image (``label_without_image``), for ``awir`` an image
  in the root instead of a class folder (``image_outside_class_folders``, not read).
  Coordinates within 0.01 px of the image border (inside or out) are snapped onto it without a
  warning: that is the rounding of normalised YOLO values (6 decimals of a 10 000 px side), and it
  keeps a box drawn to the border touching it.

``data.on_error``: ``stop`` (default) makes each error above stop the stage. ``skip`` instead drops
what is bad and goes on: a *scene* (its image or thermal file does not open or decode, its label
file is missing or unreadable, its VOC XML does not parse, its declared size differs; its boxes go
with it) or a *label* (one box: a malformed YOLO line or one whose class id is not in
``classes.txt``, a VOC ``<object>`` without name or numbers, a COCO annotation with an unknown
category or image, or a bad bbox). Each drop is counted (``dropped_scenes``, ``dropped_labels``;
COCO boxes of a dropped image: ``boxes_in_dropped_scenes``) and listed in
:attr:`Survey.dropped` with the file and the error. Errors about the survey as a whole
(``classes.txt``, the COCO file's structure, an image annotated twice, nothing left) always stop.

Scene ids are the image path relative to the root, without its extension (``cow/scene_0003``).
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from tgmatl.errors import InputError
from tgmatl.survey.raster import SceneInfo, find_thermal, is_raster, is_thermal_file, scene_info

log = logging.getLogger(__name__)

FORMATS = ("awir", "yolo", "voc", "coco")
OnError = Literal["stop", "skip"]
ON_ERROR = ("stop", "skip")
BOX_COLUMNS = [
    "scene_id", "image_path", "class_name", "xmin", "xmax", "ymin", "ymax", "truncated",
    "source", "item",
]
SCENE_COLUMNS = [
    "scene_id", "image_path", "thermal_path", "width", "height", "bands", "has_thermal",
    "transform", "crs", "source",
]
_SNAP_PX = 0.01


@dataclass
class Survey:
    """A survey read from disk.

    ``scenes``: one row per scene (:data:`SCENE_COLUMNS`; paths relative to ``root``, posix).
    ``boxes``: one row per kept box (:data:`BOX_COLUMNS`; scene pixels; ``source`` is the
    annotation file relative to ``root``, ``item`` the line (``line 3``) or object (``object 2``,
    ``annotations[5]``) within it), ordered by scene id then file order.
    ``counts``: counted warnings and drops; ``warnings``: one message per counted warning.
    ``dropped``: with ``on_error: skip``, one ``{"kind": "scene"|"label", "file", "reason"}``
    per dropped scene or label (``file`` relative to ``root``, ``reason`` the error message).
    """

    root: Path
    format: str
    classes: tuple[str, ...]
    scenes: pd.DataFrame
    boxes: pd.DataFrame
    counts: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)  # dropped boxes per ignored class
    warnings: list[str] = field(default_factory=list)
    infos: dict[str, SceneInfo] = field(default_factory=dict)  # scene_id -> header facts
    dropped: list[dict[str, str]] = field(default_factory=list)


class _SurveyError(InputError):
    """An error about the survey as a whole: stops the stage even with ``on_error: skip``."""


class _Collector:
    """Accumulates scenes, boxes, counts and warnings while a reader walks the files."""

    def __init__(self, root: Path, ignore: Iterable[str], on_error: OnError = "stop"):
        if on_error not in ON_ERROR:
            raise InputError(f"data.on_error {on_error!r} is not one of {'|'.join(ON_ERROR)}")
        self.root = root
        self.on_error = on_error
        self.dropped: list[dict[str, str]] = []
        self.ignore = set(ignore)
        self.scenes: list[dict] = []
        self.boxes: list[dict] = []
        self.counts: Counter = Counter()
        self.ignored: Counter = Counter()
        self.warnings: list[str] = []
        self.infos: dict[str, SceneInfo] = {}
        self._by_image: dict[Path, str] = {}

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def warn(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        self.warnings.append(message)

    def drop(self, kind: Literal["scene", "label"], path: Path, exc: InputError) -> None:
        """``on_error: stop`` (or a survey-wide error): raise ``exc``; ``skip``: record the drop.

        Called from an ``except InputError`` block, before anything of the scene or label was
        kept, so nothing needs undoing.
        """
        if self.on_error == "stop" or isinstance(exc, _SurveyError):
            raise exc
        self.counts[f"dropped_{kind}s"] += 1
        self.dropped.append({"kind": kind, "file": self.rel(path), "reason": str(exc)})
        self.warnings.append(f"{exc} ({kind} dropped: data.on_error skip)")

    def add_scene(
        self, image: Path, source: Path, declared: tuple[int, int] | None = None
    ) -> SceneInfo:
        if image in self._by_image:
            raise _SurveyError(
                f"{source}: image {image} is already annotated by {self._by_image[image]}"
            )
        info = scene_info(image, find_thermal(image))
        if declared is not None and declared != (info.width, info.height):
            raise InputError(
                f"{source}: declares size {declared[0]}x{declared[1]} but image {image} is "
                f"{info.width}x{info.height}"
            )
        scene_id = self.rel(image.with_suffix(""))
        self._by_image[image] = self.rel(source)
        self.infos[scene_id] = info
        self.scenes.append({
            "scene_id": scene_id,
            "image_path": self.rel(image),
            "thermal_path": self.rel(info.thermal_path) if info.thermal_path else None,
            "width": info.width,
            "height": info.height,
            "bands": info.image_bands,
            "has_thermal": info.has_thermal,
            "transform": list(info.transform) if info.transform else None,
            "crs": info.crs,
            "source": self.rel(source),
        })
        return info

    def add_box(
        self,
        info: SceneInfo,
        class_name: str,
        box: tuple[float, float, float, float],
        source: Path,
        item: str,
        truncated: bool = False,
        where: str | None = None,
    ) -> None:
        """Validate one box (scene px) against its image; keep, clip or drop it, counted.

        ``source``/``item`` locate the box (file, ``line 3`` / ``object 2``); ``where`` is the
        location used in messages (default ``"<source>: <item>"``).
        """
        where = where or f"{source}: {item}"
        if class_name in self.ignore:
            self.ignored[class_name] += 1
            self.counts["ignored_class"] += 1
            return
        x0, x1, y0, y1 = box
        if not all(math.isfinite(v) for v in box):
            raise InputError(f"{where}: box coordinates are not finite numbers: {box}")
        w, h = info.width, info.height
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            self.warn("zero_area", f"{where}: box of zero area {_fmt(box)}, dropped")
            return
        snapped = [_snap(x0, w), _snap(x1, w), _snap(y0, h), _snap(y1, h)]
        x0, x1, y0, y1 = snapped
        cx0, cx1, cy0, cy1 = max(x0, 0.0), min(x1, w), max(y0, 0.0), min(y1, h)
        if cx1 - cx0 <= 0 or cy1 - cy0 <= 0:
            self.warn(
                "outside_image",
                f"{where}: box {_fmt(box)} lies outside the {w}x{h} image, dropped",
            )
            return
        if (cx0, cx1, cy0, cy1) != (x0, x1, y0, y1):
            self.warn(
                "clipped_to_image",
                f"{where}: box {_fmt(box)} reaches outside the {w}x{h} image, clipped",
            )
            truncated = True
        scene_id = self.rel(info.path.with_suffix(""))
        self.boxes.append({
            "scene_id": scene_id,
            "image_path": self.rel(info.path),
            "class_name": class_name,
            "xmin": cx0, "xmax": cx1, "ymin": cy0, "ymax": cy1,
            "truncated": bool(truncated),
            "source": self.rel(source),
            "item": item,
        })

    def finish(self, fmt: str, classes: list[str]) -> Survey:
        if not self.scenes:
            raise InputError(f"{self.root}: no images found for data.format {fmt}")
        kept = tuple(c for c in classes if c not in self.ignore)
        scenes = pd.DataFrame(self.scenes, columns=SCENE_COLUMNS)
        boxes = pd.DataFrame(self.boxes, columns=BOX_COLUMNS)
        if boxes.empty:
            raise InputError(
                f"{self.root}: no target left after reading {len(scenes)} scene(s) "
                f"({dict(self.counts)})"
            )
        # Stable order: scenes by id, boxes in file order within a scene.
        scenes = scenes.sort_values("scene_id", kind="stable").reset_index(drop=True)
        boxes = boxes.sort_values("scene_id", kind="stable").reset_index(drop=True)
        self.counts["boxes"] = len(boxes)
        self.counts["scenes"] = len(scenes)
        return Survey(
            root=self.root, format=fmt, classes=kept, scenes=scenes, boxes=boxes,
            counts=self.counts, ignored=self.ignored, warnings=self.warnings, infos=self.infos,
            dropped=self.dropped,
        )


def _snap(v: float, limit: int) -> float:
    if abs(v) < _SNAP_PX:
        return 0.0
    if abs(v - limit) < _SNAP_PX:
        return float(limit)
    return v


def _fmt(box: tuple[float, ...]) -> str:
    return "(xmin, xmax, ymin, ymax) = (" + ", ".join(f"{v:g}" for v in box) + ")"


def read_survey(
    root: str | Path, fmt: str, ignore_classes: Iterable[str] = (), on_error: OnError = "stop"
) -> Survey:
    """Read the survey under ``root`` in layout ``fmt`` (one of :data:`FORMATS`).

    ``on_error`` (``data.on_error``): ``stop`` raises on a bad scene or label, ``skip`` drops it,
    counted and listed (see the module docstring).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: data root is not a folder")
    readers = {"awir": _read_awir, "yolo": _read_yolo, "voc": _read_voc, "coco": _read_coco}
    if fmt not in readers:
        raise InputError(f"data.format {fmt!r} is not one of {'|'.join(FORMATS)}")
    col = _Collector(root, ignore_classes, on_error)
    classes = readers[fmt](root, col)
    survey = col.finish(fmt, classes)
    for msg in survey.warnings[:20]:
        log.warning(msg)
    if len(survey.warnings) > 20:
        log.warning("... and %d more warnings", len(survey.warnings) - 20)
    return survey


# --- YOLO / AWIR ------------------------------------------------------------------------------
def read_classes_txt(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: classes.txt missing (one class name a line)")
    names = [line.strip() for line in path.read_text().splitlines()]
    while names and not names[-1]:
        names.pop()
    for i, name in enumerate(names, 1):
        if not name:
            raise InputError(f"{path}:{i}: empty class name")
    if len(set(names)) != len(names):
        raise InputError(f"{path}: duplicate class names {names}")
    if not names:
        raise InputError(f"{path}: no class names")
    return names


def _scene_images(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and is_raster(p) and not is_thermal_file(p))


def _read_yolo_pairs(pairs: list[tuple[Path, Path]], classes: list[str], col: _Collector) -> None:
    for image, label in pairs:
        try:
            if not label.is_file():
                raise InputError(
                    f"{image}: label file {label} missing (an empty file means no target)"
                )
            lines = _read_text(label).splitlines()
            info = col.add_scene(image, label)
        except InputError as exc:
            col.drop("scene", image, exc)
            continue
        if not any(line.strip() for line in lines):
            col.warn("no_targets", f"{label}: empty label file, scene has no targets")
            continue
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            try:
                cls_id, cx, cy, bw, bh = _parse_yolo_line(line, where)
                if not 0 <= cls_id < len(classes):
                    raise InputError(
                        f"{where}: class id {cls_id} not in classes.txt ({len(classes)} classes)"
                    )
                w, h = info.width, info.height
                box = ((cx - bw / 2) * w, (cx + bw / 2) * w, (cy - bh / 2) * h, (cy + bh / 2) * h)
                col.add_box(info, classes[cls_id], box, label, f"line {lineno}", where=where)
            except InputError as exc:
                col.drop("label", label, exc)


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None


def _parse_yolo_line(line: str, where: str) -> tuple[int, float, float, float, float]:
    fields = line.split()
    if len(fields) != 5:
        raise InputError(f"{where}: expected 5 fields 'class_id cx cy w h', got {len(fields)}")
    try:
        cls = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise InputError(f"{where}: not numbers: {line.strip()!r}") from None
    if not cls.is_integer():
        raise InputError(f"{where}: class id {fields[0]!r} is not an integer")
    return int(cls), *values


def _orphan_labels(folder: Path, images: list[Path], col: _Collector, recursive: bool) -> None:
    stems = {p.with_suffix("") for p in images}
    it = folder.rglob("*.txt") if recursive else folder.glob("*.txt")
    for txt in sorted(it):
        if txt.name != "classes.txt" and txt.with_suffix("") not in stems:
            col.warn("label_without_image", f"{txt}: label file without an image, not read")


def _read_awir(root: Path, col: _Collector) -> list[str]:
    classes = read_classes_txt(root / "classes.txt")
    for stray in _scene_images(root, recursive=False):
        col.warn("image_outside_class_folders",
                 f"{stray}: image in the root, outside the class folders, not read "
                 "(data.format yolo reads a flat folder)")
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = _scene_images(folder, recursive=False)
        pairs += [(img, img.with_suffix(".txt")) for img in images]
        _orphan_labels(folder, images, col, recursive=False)
    _read_yolo_pairs(pairs, classes, col)
    return classes


def _read_yolo(root: Path, col: _Collector) -> list[str]:
    classes = read_classes_txt(root / "classes.txt")
    if (root / "images").is_dir():
        images = _scene_images(root / "images", recursive=True)
        labels = root / "labels"
        pairs = [
            (img, (labels / img.relative_to(root / "images")).with_suffix(".txt"))
            for img in images
        ]
        if labels.is_dir():
            label_stems = {(root / "images" / lb.relative_to(labels)).with_suffix("")
                           for lb in labels.rglob("*.txt")}
            for stem in sorted(label_stems - {p.with_suffix("") for p in images}):
                lb = labels / stem.relative_to(root / "images")
                col.warn("label_without_image", f"{lb}.txt: label file without an image, not read")
    else:
        images = _scene_images(root, recursive=False)
        pairs = [(img, img.with_suffix(".txt")) for img in images]
        _orphan_labels(root, images, col, recursive=False)
    _read_yolo_pairs(pairs, classes, col)
    return classes


# --- Pascal VOC -------------------------------------------------------------------------------
def _voc_image(xml: Path, filename: str) -> Path:
    candidates = [xml.parent / filename]
    candidates += [xml.parent.parent / d / filename for d in ("images", "JPEGImages")]
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise InputError(f"{xml}: image {filename!r} not found (tried {tried})")


def _voc_number(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    if text is None:
        raise InputError(f"{where}: <{tag}> missing")
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: <{tag}> {text!r} is not a number") from None


def _read_voc(root: Path, col: _Collector) -> list[str]:
    xmls = sorted(root.rglob("*.xml"))
    if not xmls:
        raise InputError(f"{root}: no Pascal VOC *.xml files found")
    names: set[str] = set()
    for xml in xmls:
        try:
            tree, info = _voc_scene(xml, col)
        except InputError as exc:
            col.drop("scene", xml, exc)
            continue
        objects = tree.findall("object")
        if not objects:
            col.warn("no_targets", f"{xml}: no <object>, scene has no targets")
        for i, obj in enumerate(objects, 1):
            where = f"{xml}: object {i}"
            try:
                name = (obj.findtext("name") or "").strip()
                if not name:
                    raise InputError(f"{where}: <name> missing")
                bb = obj.find("bndbox")
                if bb is None:
                    raise InputError(f"{where}: <bndbox> missing")
                x0, y0, x1, y1 = (_voc_number(bb, t, where)
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
                truncated = (obj.findtext("truncated") or "0").strip() in ("1", "true", "True")
                col.add_box(info, name, (x0, x1, y0, y1), xml, f"object {i}", truncated)
            except InputError as exc:
                col.drop("label", xml, exc)
                continue
            names.add(name)
    return sorted(names)


def _voc_scene(xml: Path, col: _Collector) -> tuple[ET.Element, SceneInfo]:
    """Parse one VOC file and register its image; any failure is an ``InputError``."""
    try:
        tree = ET.parse(xml).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{xml}:{exc.position[0]}: not valid XML: {exc}") from None
    except OSError as exc:
        raise InputError(f"{xml}: cannot read: {exc}") from None
    filename = (tree.findtext("filename") or "").strip()
    if not filename:
        raise InputError(f"{xml}: <filename> missing")
    image = _voc_image(xml, filename)
    size = tree.find("size")
    declared = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        declared = (
            int(_voc_number(size, "width", f"{xml}: <size>")),
            int(_voc_number(size, "height", f"{xml}: <size>")),
        )
        if declared == (0, 0):  # some exporters write 0 when they did not know
            declared = None
    return tree, col.add_scene(image, xml, declared)


# --- COCO -------------------------------------------------------------------------------------
def _read_coco(root: Path, col: _Collector) -> list[str]:
    found = sorted(root.glob("*.json"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise InputError(f"{root}: expected exactly one COCO *.json in the root, found {listed}")
    path = found[0]
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise _SurveyError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise _SurveyError(f"{path}: '{key}' list missing")
    cats: dict[int, str] = {}
    for i, cat in enumerate(doc["categories"]):
        _need(cat, ("id", "name"), f"{path}: categories[{i}]", _SurveyError)
        cats[cat["id"]] = str(cat["name"])
    images: dict[int, SceneInfo] = {}
    dropped_ids: set = set()
    for i, img in enumerate(doc["images"]):
        where = f"{path}: images[{i}]"
        _need(img, ("id", "file_name"), where, _SurveyError)
        if img["id"] in images or img["id"] in dropped_ids:
            raise _SurveyError(f"{where}: duplicate image id {img['id']}")
        try:
            image = _coco_image(root, img["file_name"], where)
            declared = (img["width"], img["height"]) if "width" in img and "height" in img else None
            images[img["id"]] = col.add_scene(image, path, declared)
        except InputError as exc:
            col.drop("scene", path, exc)
            dropped_ids.add(img["id"])
    per_image: Counter = Counter()
    rows = []
    for i, ann in enumerate(doc["annotations"]):
        where = f"{path}: annotations[{i}]"
        try:
            _need(ann, ("image_id", "category_id", "bbox"), where)
            if ann["image_id"] in dropped_ids:
                col.counts["boxes_in_dropped_scenes"] += 1  # its image is listed as dropped
                continue
            if ann["image_id"] not in images:
                raise InputError(f"{where}: image_id {ann['image_id']} not in images")
            if ann["category_id"] not in cats:
                raise InputError(f"{where}: category_id {ann['category_id']} not in categories")
            bbox = ann["bbox"]
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise InputError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
        except InputError as exc:
            col.drop("label", path, exc)
            continue
        per_image[ann["image_id"]] += 1
        rows.append((i, ann))
    for img_id, info in images.items():
        if not per_image[img_id]:
            col.warn("no_targets", f"{path}: image id {img_id} ({info.path.name}) has no targets")
    for i, ann in rows:
        info = images[ann["image_id"]]
        if ann.get("iscrowd", 0):
            col.warn("crowd", f"{path}: annotations[{i}]: iscrowd region, dropped")
            continue
        try:
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (TypeError, ValueError):
                bad = ann["bbox"]
                raise InputError(f"{path}: annotations[{i}]: bbox {bad!r} not numbers") from None
            col.add_box(
                info, cats[ann["category_id"]], (x, x + w, y, y + h), path, f"annotations[{i}]"
            )
        except InputError as exc:
            col.drop("label", path, exc)
    return list(cats.values())


def _need(obj: object, keys: tuple[str, ...], where: str,
          error: type[InputError] = InputError) -> None:
    if not isinstance(obj, dict):
        raise error(f"{where}: expected an object")
    for k in keys:
        if k not in obj:
            raise error(f"{where}: key '{k}' missing")


def _coco_image(root: Path, file_name: str, where: str) -> Path:
    for c in (root / file_name, root / "images" / file_name):
        if c.is_file():
            return c
    raise InputError(f"{where}: image {file_name!r} not found under {root} or {root / 'images'}")
