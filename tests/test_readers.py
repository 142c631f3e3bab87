"""Readers for COCO, Pascal VOC, YOLO and BDD100K, written to COCO through one record model; bad input is an
InputError naming the file and element (exit 3), skipped and listed in skipped.json unless strict."""
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from admlops.components.convert.to_coco import convert_to_coco
from admlops.components.convert.records import Skips
from admlops.errors import InputError, UsageError


def _png(path, size=(200, 100)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 90, 90)).save(path)
    return path


def _anns(out, split=None):
    data = {s: json.loads((out / "annotations" / f"{s}.json").read_text()) for s in ("train", "val")}
    images = {i["id"]: i for s in data.values() for i in s["images"]}
    anns = [a for s in data.values() for a in s["annotations"]]
    return images, anns


def test_coco_reader(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    coco = {
        "images": [{"id": 7, "file_name": "a.png", "width": 200, "height": 100}],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 1, "bbox": [50, 5, 10, 20], "iscrowd": 1},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    out = tmp_path / "out"
    summary = convert_to_coco("coco", tmp_path / "ann.json", out, "road-3class", image_root=tmp_path / "imgs")
    images, anns = _anns(out)
    (img,) = images.values()
    assert (img["width"], img["height"]) == (200, 100) and (out / img["file_name"]).is_file()
    car = [a for a in anns if not a["iscrowd"]]
    assert len(car) == 1 and car[0]["bbox"] == [10, 20, 30, 40] and car[0]["category_id"] == 1  # vehicle
    assert len([a for a in anns if a["iscrowd"]]) == 3  # the crowd box ignores every category
    assert summary["source"] == "coco"
    (tmp_path / "ann.json").write_text('{"images": [\n  oops')
    with pytest.raises(InputError, match=r"ann.json:2: invalid JSON"):
        convert_to_coco("coco", tmp_path / "ann.json", tmp_path / "o2", "road-3class")


VOC_XML = """<annotation>
  <filename>b.png</filename>
  <size><width>200</width><height>100</height><depth>3</depth></size>
  <object><name>car</name><difficult>0</difficult><truncated>1</truncated>
    <bndbox><xmin>11</xmin><ymin>21</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>
  <object><name>person</name><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>200</xmax><ymax>100</ymax></bndbox></object>
</annotation>
"""


def test_voc_reader(tmp_path):
    _png(tmp_path / "JPEGImages" / "b.png")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "b.xml").write_text(VOC_XML)
    out = tmp_path / "out"
    convert_to_coco("voc", tmp_path, out, "road-3class")
    _, anns = _anns(out)
    car, person = anns
    assert car["bbox"] == [10.0, 20.0, 30.0, 40.0]  # 1-based inclusive pixels -> 0-based
    assert person["bbox"] == [0.0, 0.0, 200.0, 100.0] and person["source"]["difficult"] == 1
    (tmp_path / "Annotations" / "b.xml").write_text(VOC_XML.replace("<name>car</name>", "<name>dog</name>"))
    with pytest.raises(InputError, match=r"b.xml:4: class 'dog' has no mapping in dataset definition 'road-3class'"):
        convert_to_coco("voc", tmp_path, tmp_path / "o2", "road-3class")
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation>\n<object>")
    with pytest.raises(InputError, match=r"b.xml:2: invalid VOC XML"):
        convert_to_coco("voc", tmp_path, tmp_path / "o2", "road-3class")
    assert not (tmp_path / "o2").exists()


def test_yolo_reader(tmp_path):
    _png(tmp_path / "images" / "train" / "c.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text("names: [person, car]\n")
    (tmp_path / "labels" / "train" / "c.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.2 0.1 0.2\n")
    out = tmp_path / "out"
    convert_to_coco("yolo", tmp_path, out, "road-3class")
    _, anns = _anns(out)
    assert anns[0]["bbox"] == pytest.approx([80, 30, 40, 40]) and anns[0]["category_id"] == 1
    assert anns[1]["bbox"] == pytest.approx([10, 10, 20, 20]) and anns[1]["category_id"] == 2
    (tmp_path / "labels" / "train" / "c.txt").write_text("1 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2\n")
    with pytest.raises(InputError, match=r"c.txt:2: expected 5 fields \(class cx cy w h\), got 4"):
        convert_to_coco("yolo", tmp_path, tmp_path / "o2", "road-3class")
    (tmp_path / "labels" / "train" / "c.txt").write_text("7 0.5 0.5 0.2 0.4\n")
    with pytest.raises(InputError, match=r"c.txt:1: unknown class id '7'"):
        convert_to_coco("yolo", tmp_path, tmp_path / "o2", "road-3class")


def test_bdd100k_reader(tmp_path):
    _png(tmp_path / "images" / "d.jpg".replace(".jpg", ".png"), (1280, 720))
    frames = [{
        "name": "d.png", "attributes": {"weather": "clear"},
        "labels": [
            {"id": "1", "category": "car", "attributes": {"occluded": True, "truncated": False},
             "box2d": {"x1": 100.5, "y1": 200.0, "x2": 300.0, "y2": 400.25}},
            {"id": "2", "category": "rider", "box2d": {"x1": 10, "y1": 10, "x2": 50, "y2": 90}},
            {"id": "3", "category": "area/drivable", "poly2d": [{"vertices": [[0, 0], [1, 1]]}]},
        ],
    }]
    (tmp_path / "det.json").write_text(json.dumps(frames))
    out = tmp_path / "out"
    convert_to_coco("bdd100k", tmp_path / "det.json", out, "road-3class", image_root=tmp_path / "images")
    images, anns = _anns(out)
    assert list(images.values())[0]["width"] == 1280
    assert anns[0]["bbox"] == pytest.approx([100.5, 200.0, 199.5, 200.25]) and anns[0]["source"]["occluded"] is True
    assert anns[1]["category_id"] == 3 and len(anns) == 2  # rider -> cyclist; the polygon label is not a box
    frames[0]["labels"][0]["box2d"]["x2"] = 50
    (tmp_path / "det.json").write_text(json.dumps(frames))
    with pytest.raises(InputError, match=r"det.json: frames\[0\].labels\[0\]: degenerate box2d"):
        convert_to_coco("bdd100k", tmp_path / "det.json", tmp_path / "o2", "road-3class", image_root=tmp_path / "images")


def test_cli_convert_from_voc(tmp_path, capsys):
    from admlops.pipelines.cli import main

    _png(tmp_path / "JPEGImages" / "b.png")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "b.xml").write_text(VOC_XML)
    assert main(["data", "convert", "--from", "voc", "--definition", "road-3class", str(tmp_path), str(tmp_path / "o")]) == 0
    assert json.loads(capsys.readouterr().out)["source"] == "voc"


def test_validate_voc_lists_unmapped_class(tmp_path):
    from admlops.components.analyze.validate import validate

    _png(tmp_path / "JPEGImages" / "b.png")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "b.xml").write_text(VOC_XML.replace("<name>car</name>", "<name>dog</name>"))
    report = validate("voc", tmp_path, "road-3class")
    assert report["by_rule"] == {"unmapped_class": 1}
    assert report["violations"][0]["file"].endswith("b.xml") and report["violations"][0]["label"] == "dog"


def test_merge_kitti_voc_coco_with_duplicate_image(kitti_root, tmp_path, capsys):
    from admlops.pipelines.cli import main

    _png(tmp_path / "voc" / "JPEGImages" / "b.png")
    (tmp_path / "voc" / "Annotations").mkdir()
    (tmp_path / "voc" / "Annotations" / "b.xml").write_text(VOC_XML)
    # a COCO set whose only image is byte-for-byte a KITTI frame: a duplicate
    (tmp_path / "coco").mkdir()
    dup = kitti_root / "training" / "image_2" / "000004.png"
    (tmp_path / "coco" / "x.png").write_bytes(dup.read_bytes())
    (tmp_path / "coco" / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.png", "width": 1242, "height": 375}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]}]}))
    out = tmp_path / "merged"
    assert main(["data", "merge", str(out), "--input", f"kitti=kitti:{kitti_root}", "--input", f"voc=voc:{tmp_path / 'voc'}",
                 "--input", f"web=coco:{tmp_path / 'coco' / 'ann.json'}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_per_source"] == {"kitti": 20, "voc": 1}
    assert summary["duplicates"] == [{"frame": "web-x", "image": str(tmp_path / "coco" / "x.png"), "same_as": "kitti-000004"}]
    images, anns = _anns(out)
    assert {i["file_name"] for i in images.values()} >= {"images/kitti-000000.png", "images/voc-b.png"}
    cats = {c["id"]: c["name"] for c in json.loads((out / "annotations" / "train.json").read_text())["categories"]}
    assert cats == {1: "vehicle", 2: "pedestrian", 3: "cyclist"}
    kitti_vehicles = [a for a in anns if a["source"]["source_label"] in ("Car", "Van", "Truck")]
    assert kitti_vehicles and all(a["category_id"] == 1 and not a["iscrowd"] for a in kitti_vehicles)
    assert {a["source"]["source_format"] for a in anns} == {"kitti", "voc"}


def _cli(*args) -> subprocess.CompletedProcess:
    """``python -m admlops.pipelines.cli ARGS`` in a fresh process: exit code and output as a user sees them."""
    return subprocess.run([sys.executable, "-m", "admlops.pipelines.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONHASHSEED="0"))


def _skipped(out):
    return [(s["sample"], os.path.basename(s["file"]), s["line"], s["message"])
            for s in json.loads((out / "skipped.json").read_text())["samples"]]


def _voc(root, xml=VOC_XML, name="b"):
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "Annotations" / f"{name}.xml").write_text(xml)
    return root


def test_cli_voc_images_elsewhere(tmp_path):
    """--images replaces JPEGImages/ (a VOC set whose images live apart from its annotations)."""
    src = _voc(tmp_path / "voc")
    _png(tmp_path / "pictures" / "b.png")
    res = _cli("data", "convert", "--from", "voc", "--images", tmp_path / "pictures", "--definition", "road-3class",
               src, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    images, anns = _anns(tmp_path / "out")
    (image,) = images.values()
    assert (tmp_path / "out" / image["file_name"]).read_bytes() == (tmp_path / "pictures" / "b.png").read_bytes()
    assert [a["bbox"] for a in anns if not a["iscrowd"]][0] == [10.0, 20.0, 30.0, 40.0]
    # without --images the image is looked for in JPEGImages/, where it is not: the sample is skipped, named
    res = _cli("data", "convert", "--from", "voc", "--strict", "--definition", "road-3class", src, tmp_path / "o2")
    assert res.returncode == 3 and not (tmp_path / "o2").exists()
    assert f"b.xml: filename: label without image: expected {src / 'JPEGImages' / 'b.png'}" in res.stderr


def test_cli_reader_error_exit_3_and_skipped(tmp_path):
    src = _voc(tmp_path / "voc", VOC_XML.replace("<difficult>1</difficult>", "<difficult>Unspecified</difficult>"))
    _png(src / "JPEGImages" / "b.png")
    _voc(src, VOC_XML.replace("b.png", "c.png"), "c")
    _png(src / "JPEGImages" / "c.png")
    res = _cli("data", "convert", "--from", "voc", "--strict", "--definition", "road-3class", src, tmp_path / "strict")
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert f"admlops: error: {src / 'Annotations' / 'b.xml'}:6: object[2]/difficult: expected 0 or 1, got 'Unspecified'\n" \
        in res.stderr
    assert not (tmp_path / "strict").exists()
    res = _cli("data", "convert", "--from", "voc", "--definition", "road-3class", src, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "1 bad samples skipped" in res.stderr
    assert _skipped(tmp_path / "out") == [("b", "b.xml", 6, "object[2]/difficult: expected 0 or 1, got 'Unspecified'")]
    images, _ = _anns(tmp_path / "out")
    assert [i["file_name"] for i in images.values()] == ["images/c.png"]


def test_reader_option_a_format_does_not_take_is_a_usage_error(kitti_root, tmp_path):
    with pytest.raises(UsageError, match=r"^the kitti reader takes no option 'image_root'; it takes none$"):
        convert_to_coco("kitti", kitti_root, tmp_path / "o", image_root=tmp_path)
    with pytest.raises(UsageError, match=r"^the voc reader takes no option 'split'; it takes 'image_root', 'image_set'$"):
        convert_to_coco("voc", tmp_path, tmp_path / "o", "road-3class", split="val")
    with pytest.raises(UsageError, match=r"^the bdd100k reader needs option 'image_root'$"):
        convert_to_coco("bdd100k", tmp_path / "det.json", tmp_path / "o", "road-3class")
    with pytest.raises(UsageError, match=r"^unknown dataset format 'pascal': expected one of bdd100k, coco, kitti, nuscenes, voc, yolo$"):
        convert_to_coco("pascal", tmp_path, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    res = _cli("data", "convert", "--images", tmp_path, kitti_root, tmp_path / "o")
    assert res.returncode == 2 and "admlops: error: the kitti reader takes no option 'image_root'" in res.stderr


@pytest.mark.parametrize("edit, line, message", [
    (("<difficult>1</difficult>", "<difficult>Unspecified</difficult>"), 6,
     "object[2]/difficult: expected 0 or 1, got 'Unspecified'"),
    (("<truncated>1</truncated>", "<truncated>0.5</truncated>"), 4, "object[1]/truncated: expected 0 or 1, got '0.5'"),
    (("<width>200</width>", "<width>200.5</width>"), 3, "size/width: expected a whole number of pixels, got '200.5'"),
    (("<height>100</height>", "<height>tall</height>"), 3, "size/height: expected a number, got 'tall'"),
    (("<xmax>40</xmax>", "<xmax>forty</xmax>"), 5, "object[1]/bndbox/xmax: expected a number, got 'forty'"),
    (("<ymax>60</ymax>", ""), 5, "object[1]/bndbox: needs <xmin>, <ymin>, <xmax> and <ymax>"),
    (("<name>person</name>", ""), 6, "object[2]: needs <name> and <bndbox>"),
])
def test_voc_bad_element_names_file_line_and_element(tmp_path, edit, line, message):
    src = _voc(tmp_path, VOC_XML.replace(*edit))
    _png(src / "JPEGImages" / "b.png")
    with pytest.raises(InputError) as err:
        convert_to_coco("voc", src, tmp_path / "strict", "road-3class")
    assert (err.value.path, err.value.line, err.value.message) == (str(src / "Annotations" / "b.xml"), line, message)
    convert_to_coco("voc", src, tmp_path / "out", "road-3class", skips=Skips(strict=False))
    assert _skipped(tmp_path / "out") == [("b", "b.xml", line, message)]


def test_voc_accepts_integral_float_sizes_and_empty_flags(tmp_path):
    """"500.0" sizes (some exporters write them) are whole pixels; an empty <difficult/> is not set."""
    xml = VOC_XML.replace("<width>200</width><height>100</height>", "<width>200.0</width><height>100.0</height>")
    src = _voc(tmp_path, xml.replace("<difficult>1</difficult>", "<difficult></difficult>"))
    _png(src / "JPEGImages" / "b.png")
    convert_to_coco("voc", src, tmp_path / "out", "road-3class")
    images, anns = _anns(tmp_path / "out")
    assert [(i["width"], i["height"]) for i in images.values()] == [(200, 100)]
    person = [a for a in anns if a["source"]["label"] == "person"][0]
    assert person["source"] == {"label": "person"}
    with pytest.raises(InputError, match=r"ImageSets/Main/val.txt: image set 'val' not found"):
        convert_to_coco("voc", src, tmp_path / "o2", "road-3class", image_set="val")


def _coco_file(tmp_path, images, annotations):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "car"}]}))
    return path


GOOD_IMAGE = {"id": 1, "file_name": "a.png", "width": 200, "height": 100}
GOOD_ANN = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]}


@pytest.mark.parametrize("images, annotations, sample, message", [
    ([GOOD_IMAGE, {"id": 2, "width": 200, "height": 100}], [GOOD_ANN], "images[1]", "images[1]: missing 'file_name'"),
    ([GOOD_IMAGE, {"file_name": "b.png"}], [GOOD_ANN], "b.png", "images[1]: missing 'id'"),
    ([GOOD_IMAGE, {"id": 2, "file_name": "b.png", "width": "wide", "height": 100}], [GOOD_ANN], "b.png",
     "images[1].width: expected a number, got 'wide'"),
    ([GOOD_IMAGE, {"id": 2, "file_name": "b.png"}], [GOOD_ANN, {"id": 7, "image_id": 2, "category_id": 1}], "b.png",
     "annotations[1] (id 7): missing 'bbox'"),
    ([GOOD_IMAGE, {"id": 2, "file_name": "b.png"}], [GOOD_ANN, {"id": 7, "image_id": 2, "bbox": [1, 2, 3, 4]}], "b.png",
     "annotations[1] (id 7): missing 'category_id'"),
    ([GOOD_IMAGE, {"id": 2, "file_name": "b.png"}], [GOOD_ANN, {**GOOD_ANN, "id": 7, "image_id": 2, "iscrowd": "yes"}], "b.png",
     "annotations[1] (id 7).iscrowd: expected 0 or 1, got 'yes'"),
    ([GOOD_IMAGE], [GOOD_ANN, {"id": 7, "category_id": 1, "bbox": [1, 2, 3, 4]}], "annotations[1]",
     "annotations[1] (id 7): missing 'image_id'"),
    ([GOOD_IMAGE], [GOOD_ANN, {"id": 7, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]}], "annotations[1]",
     "annotations[1] (id 7): image_id 99 is not in images"),
])
def test_coco_bad_record_names_file_and_element(tmp_path, images, annotations, sample, message):
    ann_file = _coco_file(tmp_path, images, annotations)
    with pytest.raises(InputError) as err:
        convert_to_coco("coco", ann_file, tmp_path / "strict", "road-3class")
    assert str(err.value) == f"{ann_file}: {message}"
    assert not (tmp_path / "strict").exists()
    convert_to_coco("coco", ann_file, tmp_path / "out", "road-3class", skips=Skips(strict=False))
    assert _skipped(tmp_path / "out") == [(sample, "annotations.json", None, message)]
    images_out, anns = _anns(tmp_path / "out")
    assert [i["file_name"] for i in images_out.values()] == ["images/a.png"]  # the good image, with its box
    assert [a["bbox"] for a in anns] == [[1, 2, 30, 40]]


def test_cli_coco_missing_file_name_exit_3(tmp_path):
    ann_file = _coco_file(tmp_path, [GOOD_IMAGE, {"id": 2, "width": 200, "height": 100}], [GOOD_ANN])
    res = _cli("data", "convert", "--from", "coco", "--strict", "--definition", "road-3class", ann_file, tmp_path / "out")
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert f"admlops: error: {ann_file}: images[1]: missing 'file_name'\n" in res.stderr


def test_bdd100k_label_without_category(tmp_path):
    _png(tmp_path / "images" / "d.png", (1280, 720))
    for name in ("e.png", "f.png"):
        _png(tmp_path / "images" / name, (1280, 720))
    box = {"x1": 10, "y1": 10, "x2": 50, "y2": 90}
    frames = [{"name": "d.png", "labels": [{"category": "car", "box2d": box}, {"id": "2", "box2d": box}]},
              {"name": "e.png", "labels": [{"category": "car", "box2d": box}]},
              {"labels": []},
              {"name": "f.png", "labels": [{"category": "car", "box2d": [10, 10, 50, 90]}]}]
    (tmp_path / "det.json").write_text(json.dumps(frames))
    with pytest.raises(InputError, match=r"det.json: frames\[0\].labels\[1\]: missing 'category'$"):
        convert_to_coco("bdd100k", tmp_path / "det.json", tmp_path / "strict", "road-3class", image_root=tmp_path / "images")
    convert_to_coco("bdd100k", tmp_path / "det.json", tmp_path / "out", "road-3class", image_root=tmp_path / "images",
                    skips=Skips(strict=False))
    assert _skipped(tmp_path / "out") == [("d.png", "det.json", None, "frames[0].labels[1]: missing 'category'"),
                                          ("frames[2]", "det.json", None, "frames[2]: missing 'name'"),
                                          ("f.png", "det.json", None, "frames[3].labels[0].box2d: expected an object, got list")]
    images, _ = _anns(tmp_path / "out")
    assert [i["file_name"] for i in images.values()] == ["images/e.png"]


def test_yolo_bad_data_yaml(tmp_path):
    _png(tmp_path / "images" / "train" / "c.png")
    (tmp_path / "data.yaml").write_text("names: {person: 0}\n")
    with pytest.raises(InputError, match=r"data.yaml: expected 'names': a list or a mapping of class ids to names, "
                                         r"got \{'person': 0\}"):
        convert_to_coco("yolo", tmp_path, tmp_path / "o", "road-3class")
    (tmp_path / "data.yaml").write_text("names: [person\n")
    with pytest.raises(InputError) as err:
        convert_to_coco("yolo", tmp_path, tmp_path / "o", "road-3class")
    assert err.value.path.endswith("data.yaml") and err.value.line == 2 and err.value.message.startswith("invalid YAML")
    (tmp_path / "data.yaml").write_text("names: [person]\n")
    with pytest.raises(InputError, match=r"images/val: no images for split 'val': directory missing"):
        convert_to_coco("yolo", tmp_path, tmp_path / "o", "road-3class", split="val")
