"""Readers for COCO, Pascal VOC, YOLO and BDD100K, written to COCO through one record model."""
import json

import pytest
from PIL import Image

from admlops.components.convert.kitti_coco import convert_to_coco
from admlops.errors import InputError


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
    with pytest.raises(InputError, match=r"b.xml: class 'dog' has no mapping in dataset definition 'road-3class'"):
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
