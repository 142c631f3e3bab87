"""Dataset readers: each yields ``Frame`` records from a dataset laid out as its real specification says.
A bad sample raises an InputError naming its file and line; with a non-strict ``skips`` it is recorded there
and left out instead (a bad dataset-level file, like an unparsable annotation json, always raises).

* ``kitti``   KITTI object: ``training/{image_2,label_2,calib,velodyne}`` (devkit_object readme)
* ``coco``    COCO detection: one annotation json (``bbox`` = [x, y, w, h]) and an image folder
* ``voc``     Pascal VOC: ``Annotations/*.xml`` (1-based pixel ``bndbox``) and ``JPEGImages/``
* ``yolo``    YOLO/Ultralytics: ``images/**``, ``labels/**/*.txt`` ("class cx cy w h", normalised), ``data.yaml`` names
* ``bdd100k`` BDD100K detection json (a list of frames with ``labels[].box2d``) and its image folder
* ``nuscenes`` nuScenes v1.0 tables + samples/: one frame per keyframe camera image, boxes projected from 3D
"""
from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import yaml

from admlops.components.convert.lidar import kitti_lidar, kitti_scan
from admlops.components.convert.records import STRICT, Frame, Object, Skips, image_size, reader
from admlops.errors import InputError
from admlops.formats import kitti
from admlops.formats import nuscenes as nus

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None


def _number(value, path: Path, where: str, line: int | None = None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: expected a number, got {value!r}", line) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise InputError(path, f"{where}: expected a finite number, got {value!r}", line)
    return out


def kitti_frames(root: str | Path) -> tuple[Path, list[str]]:
    """``root/training`` and its frame ids (label file stems, sorted); an error when it is not KITTI."""
    training = Path(root) / "training"
    for sub in ("label_2", "image_2"):
        if not (training / sub).is_dir():
            raise InputError(training / sub, "not a KITTI object dataset: directory missing")
    frames = sorted(p.stem for p in (training / "label_2").glob("*.txt"))
    if not frames:
        raise InputError(training / "label_2", "no label files (*.txt)")
    return training, frames


@reader("kitti")
def read_kitti(root: str | Path, classes: tuple[str, ...] = kitti.CLASSES, skips: Skips = STRICT) -> Iterator[Frame]:
    training, frames = kitti_frames(root)
    for frame in frames:
        with skips.sample(frame):
            yield read_kitti_frame(training, frame, classes)


def read_kitti_frame(training: Path, frame: str, classes: tuple[str, ...] = kitti.CLASSES, labels: bool = True,
                     count_points: bool = True) -> Frame:
    """One frame of ``training/`` (or, with ``labels=False``, of KITTI's unlabelled ``testing/``); with
    ``count_points`` each 3D box gets ``num_lidar_pts`` from the scan (when calib and velodyne exist)."""
    label = training / "label_2" / f"{frame}.txt"
    image = training / "image_2" / f"{frame}.png"
    width, height = image_size(image, label if labels else image)
    objects = []
    for lineno, o in kitti.read_label_lines(label, classes) if labels else ():
        box3d = None if o.type == "DontCare" else {"dimensions": o.dimensions, "location": o.location, "rotation_y": o.rotation_y}
        attrs = {} if o.type == "DontCare" else {"truncated": o.truncated, "occluded": o.occluded, "alpha": o.alpha}
        objects.append(Object(o.type, o.bbox, attrs, box3d, lineno))
    calib_file, lidar = training / "calib" / f"{frame}.txt", training / "velodyne" / f"{frame}.bin"
    calib = kitti.read_calib(calib_file) if calib_file.is_file() else None
    if count_points and calib is not None and lidar.is_file() and objects:  # LiDAR points per 3D box, as mmdet3d counts
        with_3d = [i for i, o in enumerate(objects) if o.box3d is not None]
        counts = kitti_lidar(kitti_scan(lidar), calib, width, height, [objects[i] for i in with_3d])[2].sum(0)
        for i, n in zip(with_3d, counts, strict=True):
            objects[i] = dataclasses.replace(objects[i], attributes={**objects[i].attributes, "num_lidar_pts": int(n)})
    return Frame(frame, image, width, height, tuple(objects), label, calib, lidar if lidar.is_file() else None)


@reader("coco")
def read_coco(ann_file: str | Path, image_root: str | Path | None = None, skips: Skips = STRICT) -> Iterator[Frame]:
    ann_file = Path(ann_file)
    data = _load_json(ann_file)
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputError(ann_file, f"not a COCO detection file: missing {key!r}")
    root = Path(image_root) if image_root else ann_file.parent
    cats = {c["id"]: c["name"] for c in data["categories"]}
    by_image: dict[int, list] = {}
    for i, ann in enumerate(data["annotations"]):
        by_image.setdefault(ann.get("image_id"), []).append((i, ann))
    for im in data["images"]:
        with skips.sample(str(im.get("file_name", im.get("id")))):
            objects = []
            for i, ann in by_image.get(im["id"], []):
                where = f"annotations[{i}] (id {ann.get('id')})"
                if ann.get("category_id") not in cats:
                    raise InputError(ann_file, f"{where}: category_id {ann.get('category_id')!r} is not in categories")
                bbox = ann.get("bbox")
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise InputError(ann_file, f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
                x, y, w, h = (_number(v, ann_file, where) for v in bbox)
                if w <= 0 or h <= 0:
                    raise InputError(ann_file, f"{where}: degenerate bbox {bbox}")
                objects.append(Object(cats[ann["category_id"]], (x, y, x + w, y + h), {"crowd": int(ann.get("iscrowd", 0))}))
            image = root / im["file_name"]
            width, height = im.get("width"), im.get("height")
            if not width or not height:
                width, height = image_size(image, ann_file)
            elif not image.is_file():
                raise InputError(ann_file, f"image {im['file_name']!r} (id {im['id']}) not found under {root}")
            yield Frame(Path(im["file_name"]).stem, image, int(width), int(height), tuple(objects), ann_file)


@reader("voc")
def read_voc(root: str | Path, image_set: str | None = None, skips: Skips = STRICT) -> Iterator[Frame]:
    """``root`` holds ``Annotations/`` and ``JPEGImages/`` (e.g. VOCdevkit/VOC2012); ``image_set`` names an
    ``ImageSets/Main/<set>.txt`` list, else every annotation is read."""
    root = Path(root)
    ann_dir = root / "Annotations"
    if not ann_dir.is_dir():
        raise InputError(ann_dir, "not a Pascal VOC dataset: directory missing")
    if image_set:
        ids = (root / "ImageSets" / "Main" / f"{image_set}.txt").read_text().split()
        files = [ann_dir / f"{i}.xml" for i in ids]
    else:
        files = sorted(ann_dir.glob("*.xml"))
    for xml_file in files:
        with skips.sample(xml_file.stem):
            try:
                tree = ET.parse(xml_file)
            except (ET.ParseError, FileNotFoundError) as exc:
                line = getattr(exc, "position", (None,))[0]
                raise InputError(xml_file, f"invalid VOC XML: {exc}", line) from None
            node = tree.getroot()
            image = root / "JPEGImages" / (node.findtext("filename") or f"{xml_file.stem}.jpg")
            size = node.find("size")
            if size is not None and size.findtext("width") and int(float(size.findtext("width"))) > 0:
                width, height = int(float(size.findtext("width"))), int(float(size.findtext("height")))
            else:
                width, height = image_size(image, xml_file)
            objects = []
            for i, obj in enumerate(node.iter("object")):
                box = obj.find("bndbox")
                name = (obj.findtext("name") or "").strip()
                if box is None or not name:
                    raise InputError(xml_file, f"object {i}: needs <name> and <bndbox>")
                xmin, ymin, xmax, ymax = (_number(box.findtext(k), xml_file, f"object {i} {k}") for k in ("xmin", "ymin", "xmax", "ymax"))
                # VOC pixel indices are 1-based and inclusive: [xmin - 1, xmax) in 0-based continuous coordinates
                attrs = {k: int(obj.findtext(k)) for k in ("difficult", "truncated", "occluded") if obj.findtext(k) is not None}
                objects.append(Object(name, (xmin - 1, ymin - 1, xmax, ymax), attrs))
            yield Frame(xml_file.stem, image, width, height, tuple(objects), xml_file)


@reader("yolo")
def read_yolo(root: str | Path, split: str = "train", skips: Skips = STRICT) -> Iterator[Frame]:
    """``root`` holds ``data.yaml`` (``names``: a list or an id -> name mapping), ``images/<split>/`` and
    ``labels/<split>/`` (Ultralytics layout)."""
    root = Path(root)
    data_yaml = root / "data.yaml"
    if not data_yaml.is_file():
        raise InputError(data_yaml, "not a YOLO dataset: data.yaml missing")
    names = (yaml.safe_load(data_yaml.read_text()) or {}).get("names")
    names = dict(enumerate(names)) if isinstance(names, list) else {int(k): v for k, v in (names or {}).items()}
    if not names:
        raise InputError(data_yaml, "expected 'names': a list or a mapping of class ids to names")
    images = sorted(p for p in (root / "images" / split).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for image in images:
        with skips.sample(image.stem):
            label = root / "labels" / split / image.relative_to(root / "images" / split).with_suffix(".txt")
            width, height = image_size(image, label)
            objects = []
            lines = label.read_text().splitlines() if label.is_file() else []  # no label file: no objects
            for lineno, line in enumerate(lines, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 5:
                    raise InputError(label, f"expected 5 fields (class cx cy w h), got {len(fields)}", lineno)
                cls = fields[0]
                if not cls.isdigit() or int(cls) not in names:
                    raise InputError(label, f"unknown class id {cls!r}; data.yaml names {sorted(names)}", lineno)
                cx, cy, w, h = (_number(v, label, f"field {i}", lineno) for i, v in enumerate(fields[1:], start=2))
                if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
                    raise InputError(label, "expected normalised values in [0, 1] and a positive size", lineno)
                box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
                objects.append(Object(names[int(cls)], box, {}, None, lineno))
            yield Frame(image.stem, image, width, height, tuple(objects), label)


@reader("bdd100k")
def read_bdd100k(label_file: str | Path, image_root: str | Path, skips: Skips = STRICT) -> Iterator[Frame]:
    """BDD100K detection labels (``det_20`` json: a list of {name, attributes, labels[{category, box2d,
    attributes}]}); frames and boxes of other label types (lanes, drivable areas) are skipped."""
    label_file = Path(label_file)
    frames = _load_json(label_file)
    if not isinstance(frames, list):
        raise InputError(label_file, "expected a list of frames")
    for i, fr in enumerate(frames):
        with skips.sample(str(fr.get("name", f"frames[{i}]"))):
            if "name" not in fr:
                raise InputError(label_file, f"frames[{i}]: missing 'name'")
            image = Path(image_root) / fr["name"]
            width, height = image_size(image, label_file)
            objects = []
            for j, lab in enumerate(fr.get("labels") or []):
                box = lab.get("box2d")
                if box is None:
                    continue
                where = f"frames[{i}].labels[{j}]"
                x1, y1, x2, y2 = (_number(box.get(k), label_file, f"{where}.box2d.{k}") for k in ("x1", "y1", "x2", "y2"))
                if x2 <= x1 or y2 <= y1:
                    raise InputError(label_file, f"{where}: degenerate box2d {box}")
                attrs = {k: v for k, v in (lab.get("attributes") or {}).items() if k in ("occluded", "truncated", "crowd")}
                objects.append(Object(lab["category"], (x1, y1, x2, y2), attrs))
            yield Frame(Path(fr["name"]).stem, image, width, height, tuple(objects), label_file)


@reader("nuscenes")
def read_nuscenes(root: str | Path, version: str = "v1.0-trainval", cameras: tuple[str, ...] = nus.CAMERAS,
                  skips: Skips = STRICT) -> Iterator[Frame]:
    """One frame per keyframe image of each camera, in sample-table order. The 2D box of an annotation is its
    3D box projected and cut to the image (as mmdet3d's mono3d infos); the 3D box is kept in the camera frame
    in KITTI's convention (bottom centre, h w l, rotation about y); visibility and attribute ride along."""
    tables = nus.Tables(root, version)
    for sample in tables.rows["sample"]:
        for cam in cameras:
            with skips.sample(f"{sample['token']}/{cam}"):
                sd = tables.sample_data[sample["token"]].get(cam)
                if sd is None:
                    raise InputError(tables.dir / "sample_data.json", f"sample {sample['token']!r} has no {cam} keyframe")
                objects = []
                for o in nus.camera_objects(tables, sample, cam):
                    length, height, width = o["lhw"]
                    bottom = o["centre"] + (0.0, height / 2, 0.0)
                    box3d = {"dimensions": (height, width, length), "location": tuple(bottom.tolist()), "rotation_y": o["yaw"]}
                    attrs = {"visibility": o["visibility"], "attribute": o["attribute"], "num_lidar_pts": o["num_lidar_pts"]}
                    objects.append(Object(o["category"], tuple(o["bbox"]), attrs, box3d))
                scene = tables.get("scene", sample["scene_token"], "sample", sample)["name"]
                yield Frame(Path(sd["filename"]).stem, tables.path(sd), int(sd["width"]), int(sd["height"]), tuple(objects),
                            tables.dir / "sample_annotation.json", group=scene)
