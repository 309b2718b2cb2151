"""Annotation readers: every layout to one box table, class order, ignored classes, bad input."""

import json

import pytest
from fixtures_data import (
    Scene,
    pattern,
    voc_xml,
    write_awir,
    write_coco,
    write_raster,
    write_voc,
    write_yolo,
)

from tgmatl.config import DataParams, TileParams
from tgmatl.errors import InputError
from tgmatl.params import ParamsError, parse_section
from tgmatl.survey.annotations import BOX_COLUMNS, read_survey

CLASSES = ["cow", "deer", "horse"]


def scenes():
    return [
        Scene("s1", 120, 80, [("cow", 10, 40, 20, 50), ("horse", 60, 100, 5, 25)]),
        Scene("s2", 100, 100, [("deer", 30, 50, 30, 70)], suffix=".jpg", offset=3),
    ]


def boxes_of(survey):
    b = survey.boxes
    return [
        (r.scene_id, r.class_name, *(round(v, 4) for v in (r.xmin, r.xmax, r.ymin, r.ymax)))
        for r in b.itertuples()
    ]


def expected(prefix=""):
    return [
        (f"{prefix}s1", "cow", 10, 40, 20, 50),
        (f"{prefix}s1", "horse", 60, 100, 5, 25),
        (f"{prefix}s2", "deer", 30, 50, 30, 70),
    ]


# --- each layout --------------------------------------------------------------------------------
def test_awir_class_folders(tmp_path):
    sc = scenes()
    sc[0].name, sc[1].name = "cow/s1", "deer/s2"
    root = write_awir(tmp_path / "awir", CLASSES, sc)
    s = read_survey(root, "awir")
    assert s.classes == tuple(CLASSES)
    assert list(s.boxes.columns) == BOX_COLUMNS
    got = boxes_of(s)
    assert got == [("cow/s1", "cow", 10, 40, 20, 50), ("cow/s1", "horse", 60, 100, 5, 25),
                   ("deer/s2", "deer", 30, 50, 30, 70)]
    assert s.boxes.source.tolist() == ["cow/s1.txt", "cow/s1.txt", "deer/s2.txt"]
    assert s.boxes.item.tolist() == ["line 1", "line 2", "line 1"]
    assert s.scenes.image_path.tolist() == ["cow/s1.png", "deer/s2.jpg"]
    assert s.scenes[["width", "height", "bands"]].values.tolist() == [[120, 80, 3], [100, 100, 3]]


@pytest.mark.parametrize("split", [False, True])
def test_yolo_flat_and_split(tmp_path, split):
    root = write_yolo(tmp_path / "yolo", CLASSES, scenes(), split=split)
    s = read_survey(root, "yolo")
    assert s.classes == tuple(CLASSES)
    assert boxes_of(s) == expected("images/" if split else "")
    if split:
        assert s.boxes.source.tolist()[0] == "labels/s1.txt"


def test_voc_hit_uav_layout_sorted_classes_ignored_and_truncated(tmp_path):
    sc = [Scene("f1", 64, 48, [("Person", 1, 5, 2, 9), ("DontCare", 0, 10, 0, 10),
                               ("Car", 0, 20, 10, 30)], suffix=".jpg", bands=1),
          Scene("f2", 64, 48, [], suffix=".jpg", bands=1)]
    root = write_voc(tmp_path / "voc", sc)
    xml = root / "annotations" / "f1.xml"
    xml.write_text(voc_xml("f1.jpg", sc[0], truncated={2: 1}))
    s = read_survey(root, "voc", ["DontCare"])
    assert s.classes == ("Car", "Person")  # sorted names, DontCare removed
    assert boxes_of(s) == [("images/f1", "Person", 1, 5, 2, 9), ("images/f1", "Car", 0, 20, 10, 30)]
    assert s.boxes.truncated.tolist() == [False, True]
    assert s.boxes.item.tolist() == ["object 1", "object 3"]
    assert s.counts["ignored_class"] == 1 and s.ignored == {"DontCare": 1}
    assert s.counts["no_targets"] == 1
    assert any("f2.xml: no <object>" in w for w in s.warnings)
    assert s.scenes.bands.tolist() == [1, 1]


def test_voc_standard_layout_and_image_beside_the_xml(tmp_path):
    sc = scenes()
    root = write_voc(tmp_path / "voc", sc[:1], image_dir="JPEGImages", xml_dir="Annotations")
    write_voc(root / "extra", sc[1:], image_dir="extra", xml_dir="extra")  # image beside the xml
    s = read_survey(root, "voc")
    assert s.classes == ("cow", "deer", "horse")
    assert [b[0] for b in boxes_of(s)] == ["JPEGImages/s1", "JPEGImages/s1", "extra/extra/s2"]


def test_coco_keeps_category_order_and_drops_crowd(tmp_path):
    classes = ["horse", "cow", "deer"]  # not sorted: the categories order is kept
    sc = scenes() + [Scene("s3", 50, 50, [], offset=5)]
    root = write_coco(tmp_path / "coco", classes, sc)
    doc = json.loads((root / "annotations.json").read_text())
    doc["annotations"][0]["iscrowd"] = 1
    (root / "annotations.json").write_text(json.dumps(doc))
    s = read_survey(root, "coco")
    assert s.classes == tuple(classes)
    assert boxes_of(s) == expected("images/")[1:]
    assert s.counts["crowd"] == 1 and s.counts["no_targets"] == 1
    assert s.boxes.item.tolist() == ["annotations[1]", "annotations[2]"]


def test_ignored_classes_leave_the_class_list_and_are_counted(tmp_path):
    sc = [Scene("a/s1", 100, 100, [("cow", 1, 9, 1, 9), ("DontCare", 10, 20, 10, 20),
                                   ("DontCare", 30, 40, 30, 40)])]
    root = write_awir(tmp_path / "awir", ["cow", "DontCare", "deer"], sc)
    s = read_survey(root, "awir", ["DontCare"])
    assert s.classes == ("cow", "deer")
    assert s.boxes.class_name.tolist() == ["cow"]
    assert s.ignored == {"DontCare": 2} and s.counts["ignored_class"] == 2


def test_thermal_companions_are_not_scenes(tmp_path):
    sc = scenes()
    sc[0].thermal_file = True
    root = write_yolo(tmp_path / "yolo", CLASSES, sc)
    s = read_survey(root, "yolo")
    assert s.scenes.scene_id.tolist() == ["s1", "s2"]
    assert s.scenes.thermal_path.tolist()[0] == "s1_thermal.png"
    assert s.scenes.has_thermal.tolist() == [True, False]


# --- bad input ----------------------------------------------------------------------------------
def awir(tmp_path, boxes=None, lines=None):
    sc = [Scene("cow/s1", 100, 80, boxes or [("cow", 10, 20, 10, 20)])]
    root = write_awir(tmp_path / "awir", CLASSES, sc)
    if lines is not None:
        (root / "cow" / "s1.txt").write_text("".join(f"{x}\n" for x in lines))
    return root


def test_missing_label_file_is_an_error_naming_it(tmp_path):
    root = awir(tmp_path)
    (root / "cow" / "s1.txt").unlink()
    with pytest.raises(InputError, match=r"cow/s1\.png: label file .*cow/s1\.txt missing"):
        read_survey(root, "awir")


def test_empty_label_file_is_a_counted_warning(tmp_path):
    root = awir(tmp_path)
    write_awir(root, CLASSES, [Scene("deer/s2", 50, 50, [])])  # empty label file
    s = read_survey(root, "awir")
    assert s.counts["no_targets"] == 1
    assert any("deer/s2.txt: empty label file" in w for w in s.warnings)
    assert s.scenes.scene_id.tolist() == ["cow/s1", "deer/s2"]


def test_class_id_not_in_classes_txt_names_file_and_line(tmp_path):
    root = awir(tmp_path, lines=["0 0.5 0.5 0.1 0.1", "3 0.5 0.5 0.1 0.1"])
    with pytest.raises(InputError, match=r"cow/s1\.txt:2: class id 3 not in classes\.txt"):
        read_survey(root, "awir")


@pytest.mark.parametrize("line, why", [("0 0.5 0.5 0.1", "expected 5 fields"),
                                       ("0 0.5 x 0.1 0.1", "not numbers"),
                                       ("1.5 0.5 0.5 0.1 0.1", "class id '1.5' is not an integer")])
def test_malformed_yolo_lines_name_file_and_line(tmp_path, line, why):
    root = awir(tmp_path, lines=["0 0.5 0.5 0.1 0.1", "", line])
    with pytest.raises(InputError, match=rf"cow/s1\.txt:3: {why}"):
        read_survey(root, "awir")


def test_boxes_of_zero_area_or_outside_are_dropped_and_partly_outside_clipped(tmp_path):
    root = awir(tmp_path, lines=[
        "0 0.5 0.5 0.1 0.1",      # kept: x 45..55, y 36..44
        "1 0.5 0.5 0.0 0.1",      # zero width
        "2 1.5 0.5 0.2 0.2",      # wholly outside (x 140..160)
        "1 0.0 0.5 0.2 0.25",     # half outside on the left: clipped to x 0..10
    ])
    s = read_survey(root, "awir")
    assert (s.counts["zero_area"], s.counts["outside_image"], s.counts["clipped_to_image"]) == (
        1, 1, 1)
    assert s.boxes.item.tolist() == ["line 1", "line 4"]
    clipped = s.boxes.iloc[1]
    assert (clipped.xmin, clipped.xmax) == (0.0, pytest.approx(10.0)) and clipped.truncated
    assert not s.boxes.iloc[0].truncated
    msgs = "\n".join(s.warnings)
    assert "cow/s1.txt:2: box of zero area" in msgs
    assert "cow/s1.txt:3: box" in msgs and "outside the 100x80 image, dropped" in msgs
    assert "cow/s1.txt:4: box" in msgs and "clipped" in msgs


def test_label_without_image_and_stray_image_are_counted(tmp_path):
    root = awir(tmp_path)
    (root / "cow" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    write_raster(root / "stray.png", pattern(10, 10, 3))
    s = read_survey(root, "awir")
    assert s.counts["label_without_image"] == 1
    assert any("cow/ghost.txt: label file without an image" in w for w in s.warnings)
    assert s.counts["image_outside_class_folders"] == 1
    assert any("stray.png: image in the root, outside the class folders" in w for w in s.warnings)


def test_image_that_does_not_open_names_the_file(tmp_path):
    root = awir(tmp_path)
    (root / "cow" / "s1.png").write_bytes(b"garbage" * 20)
    with pytest.raises(InputError, match=r"cow/s1\.png: image does not open"):
        read_survey(root, "awir")


def test_thermal_size_mismatch_names_both_files(tmp_path):
    root = awir(tmp_path)
    write_raster(root / "cow" / "s1_thermal.png", pattern(80, 99, 1))
    with pytest.raises(InputError, match=r"cow/s1_thermal\.png: thermal size 99x80 .*cow/s1\.png"):
        read_survey(root, "awir")


def test_voc_size_mismatch_and_bad_xml_name_the_file(tmp_path):
    sc = [Scene("f1", 64, 48, [("Car", 1, 5, 2, 9)])]
    root = write_voc(tmp_path / "voc", sc)
    xml = root / "annotations" / "f1.xml"
    xml.write_text(xml.read_text().replace("<width>64</width>", "<width>640</width>"))
    with pytest.raises(InputError, match=r"f1\.xml: declares size 640x48 but image .* is 64x48"):
        read_survey(root, "voc")
    xml.write_text("<annotation><filename>f1.png</filename>\n<object>")
    with pytest.raises(InputError, match=r"f1\.xml:2: not valid XML"):
        read_survey(root, "voc")
    xml.write_text(voc_xml("missing.png", sc[0]))
    with pytest.raises(InputError, match=r"f1\.xml: image 'missing\.png' not found"):
        read_survey(root, "voc")


def test_coco_unknown_category_and_image_name_the_annotation(tmp_path):
    root = write_coco(tmp_path / "coco", CLASSES, scenes())
    path = root / "annotations.json"
    doc = json.loads(path.read_text())
    doc["annotations"][1]["category_id"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"annotations\.json: annotations\[1\]: category_id 99"):
        read_survey(root, "coco")
    doc["annotations"][1]["category_id"] = 1
    doc["annotations"][2]["image_id"] = 5
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=r"annotations\[2\]: image_id 5 not in images"):
        read_survey(root, "coco")
    (root / "other.json").write_text("{}")
    with pytest.raises(InputError, match="exactly one COCO"):
        read_survey(root, "coco")


def test_no_target_left_is_an_error(tmp_path):
    root = awir(tmp_path, lines=["0 0.5 0.5 0 0"])
    with pytest.raises(InputError, match="no target left"):
        read_survey(root, "awir")


def test_unknown_format_and_params_errors_name_the_key(tmp_path):
    with pytest.raises(InputError, match="data.format 'tiff'"):
        read_survey(tmp_path, "tiff")
    good = {"root": "data/demo", "format": "voc", "ignore_classes": ["DontCare"],
            "on_error": "stop"}
    assert parse_section(DataParams, good, "data").format == "voc"
    with pytest.raises(ParamsError, match=r"data\.on_error: 'ignore' is not one of stop\|skip"):
        parse_section(DataParams, {**good, "on_error": "ignore"}, "data")
    with pytest.raises(ParamsError, match=r"data\.format: 'tiff' is not one of awir\|yolo"):
        parse_section(DataParams, {**good, "format": "tiff"}, "data")
    with pytest.raises(ParamsError, match=r"unknown key\(s\) data\.layout"):
        parse_section(DataParams, {**good, "layout": "flat"}, "data")
    tile = {"size": 300, "stride": 300, "edge": "shift", "min_visible": 0.5}
    with pytest.raises(ParamsError, match=r"tile\.min_visible: 0\.0 out of range"):
        parse_section(TileParams, {**tile, "min_visible": 0.0}, "tile")
    with pytest.raises(ParamsError, match=r"tile\.edge: 'wrap' is not one of pad\|shift\|drop"):
        parse_section(TileParams, {**tile, "edge": "wrap"}, "tile")


@pytest.mark.parametrize("fmt", ["voc", "coco"])
def test_on_error_skip_drops_bad_scenes_and_labels_in_voc_and_coco(tmp_path, fmt):
    sc = scenes() + [Scene("s3", 100, 100, [("cow", 10, 30, 10, 30)], offset=5)]
    if fmt == "voc":
        root = write_voc(tmp_path, sc)
        xml = tmp_path / "annotations" / "s1.xml"  # object 2 loses its numbers
        xml.write_text(xml.read_text().replace("<xmin>60</xmin>", "<xmin>sixty</xmin>"))
        bad_label = ("label", "annotations/s1.xml", "object 2: <xmin> 'sixty' is not a number")
    else:
        root = write_coco(tmp_path, CLASSES, sc)
        doc = json.loads((root / "annotations.json").read_text())
        doc["annotations"][1]["category_id"] = 99
        (root / "annotations.json").write_text(json.dumps(doc))
        bad_label = ("label", "annotations.json", "category_id 99 not in categories")
    (root / "images" / "s3.png").write_bytes(b"not an image")
    with pytest.raises(InputError):
        read_survey(root, fmt)
    s = read_survey(root, fmt, on_error="skip")
    assert boxes_of(s) == [e for e in expected("images/") if e[1] != "horse"]
    assert (s.counts["dropped_scenes"], s.counts["dropped_labels"]) == (1, 1)
    kinds = {(d["kind"], d["file"]) for d in s.dropped}
    assert kinds == {bad_label[:2], ("scene", "annotations/s3.xml" if fmt == "voc"
                                     else "annotations.json")}
    label = next(d for d in s.dropped if d["kind"] == "label")
    assert bad_label[2] in label["reason"]
    if fmt == "coco":  # the dropped image's box is counted too
        assert s.counts["boxes_in_dropped_scenes"] == 1
