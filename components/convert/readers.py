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
from typing import Callable, Iterator, TypeVar
from xml.parsers import expat

import yaml

from admlops.components.convert.lidar import kitti_lidar, kitti_scan
from admlops.components.convert.records import STRICT, Frame, Object, Skips, image_size, reader
from admlops.errors import InputError
from admlops.formats import kitti
from admlops.formats import nuscenes as nus

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
T = TypeVar("T")
LINE = "__line__"  # the attribute _parse_xml gives every element: the line of its start tag


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None


def _require(record, keys: tuple[str, ...], path: Path, where: str) -> dict:
    """``record`` when it is a JSON object holding every one of ``keys``; else an InputError naming the element
    (``images[3]: missing 'file_name'``)."""
    if not isinstance(record, dict):
        raise InputError(path, f"{where}: expected an object, got {type(record).__name__}")
    for key in keys:
        if key not in record:
            raise InputError(path, f"{where}: missing {key!r}")
    return record


def _sample_name(record, key: str, where: str) -> str:
    """What a JSON sample is listed as when skipped: its ``key`` (file name) if it has one, else its element."""
    return str(record[key]) if isinstance(record, dict) and key in record else where


def _number(value, path: Path, where: str, line: int | None = None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: expected a number, got {value!r}", line) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise InputError(path, f"{where}: expected a finite number, got {value!r}", line)
    return out


def _pixels(value, path: Path, where: str, line: int | None = None) -> int:
    """An image width or height: a whole number >= 0, also written as an integral float ("500.0", as some
    exporters write it); "500.5" or "-1" is an error naming ``where``."""
    number = _number(value, path, where, line)
    if not number.is_integer() or number < 0:
        raise InputError(path, f"{where}: expected a whole number of pixels, got {value!r}", line)
    return int(number)


def _flag(value, path: Path, where: str, line: int | None = None) -> int:
    """A 0/1 flag as the VOC devkit (difficult, truncated, occluded) and COCO (iscrowd) define them. Anything else,
    e.g. "Unspecified" (which VOC only defines for <pose>), is an error naming ``where``."""
    if str(value).strip() not in ("0", "1"):
        raise InputError(path, f"{where}: expected 0 or 1, got {value!r}", line)
    return int(value)


def _sized_image(image: Path, width, height, referrer: Path, where: str) -> tuple[int, int]:
    """(width, height): as the labels declare them (the image only checked to exist), or, where they declare
    none (absent or 0), the image's own, read whole."""
    if not width or not height:
        return image_size(image, referrer)
    if not image.is_file():
        raise InputError(referrer, f"{where}: label without image: expected {image}")
    return width, height


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


def kitti_split_ids(path: Path, frames: set[str], skips: Skips, missing: str = "has no label in training/label_2",
                    sample: Callable[[str], str] = str, check: Callable[[str], str | None] | None = None) -> list[str]:
    """The frame ids a KITTI split file lists (``ImageSets/<split>.txt``: whitespace-separated, one a line), in order.

    An id not in ``frames`` (the frames that have their files, e.g. the label file stems) is a bad sample named
    with the split file and its line, ``frame '000042' <missing>``, not by a file of it that does not exist; so is
    one ``check`` returns a message for (checked first). ``sample(id)`` is its name in skipped.json."""
    ids = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        for frame in line.split():
            with skips.sample(sample(frame)):
                problem = check(frame) if check else None
                if problem is None and frame not in frames:
                    problem = f"frame {frame!r} {missing}"
                if problem is not None:
                    raise InputError(path, problem, lineno)
                ids.append(frame)
    return ids


@reader("kitti")
def read_kitti(root: str | Path, skips: Skips = STRICT) -> Iterator[Frame]:
    """Every labelled frame of ``root/training``; the layout fixes where images are, so it takes no options."""
    training, frames = kitti_frames(root)
    for frame in frames:
        with skips.sample(frame):
            yield read_kitti_frame(training, frame)


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
    """``ann_file`` is a COCO detection json; images are under ``image_root`` (default: beside the json). An image
    or annotation record that is not whole is a bad sample; so is an annotation of an image not in ``images``."""
    ann_file = Path(ann_file)
    data = _load_json(ann_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise InputError(ann_file, f"not a COCO detection file: expected a list {key!r}")
    root = Path(image_root) if image_root else ann_file.parent
    cats = {}
    for j, cat in enumerate(data["categories"]):
        cats[_require(cat, ("id", "name"), ann_file, f"categories[{j}]")["id"]] = cat["name"]
    image_ids = {im["id"] for im in data["images"] if isinstance(im, dict) and "id" in im}
    by_image: dict[int, list] = {}
    for i, ann in enumerate(data["annotations"]):
        with skips.sample(f"annotations[{i}]"):
            where = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
            if _require(ann, ("image_id",), ann_file, where)["image_id"] not in image_ids:
                raise InputError(ann_file, f"{where}: image_id {ann['image_id']!r} is not in images")
            by_image.setdefault(ann["image_id"], []).append((where, ann))
    for n, im in enumerate(data["images"]):
        where = f"images[{n}]"
        with skips.sample(_sample_name(im, "file_name", where)):
            _require(im, ("id", "file_name"), ann_file, where)
            objects = tuple(_coco_object(ann, ann_file, at, cats) for at, ann in by_image.get(im["id"], []))
            image = root / im["file_name"]
            width, height = (_pixels(im.get(k) or 0, ann_file, f"{where}.{k}") for k in ("width", "height"))
            width, height = _sized_image(image, width, height, ann_file, where)
            yield Frame(Path(im["file_name"]).stem, image, width, height, objects, ann_file)


def _coco_object(ann: dict, ann_file: Path, where: str, cats: dict) -> Object:
    """One COCO annotation (``bbox`` = [x, y, w, h]) as an Object; an error naming ``where`` when it is not whole."""
    _require(ann, ("category_id", "bbox"), ann_file, where)
    if ann["category_id"] not in cats:
        raise InputError(ann_file, f"{where}: category_id {ann['category_id']!r} is not in categories")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise InputError(ann_file, f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
    x, y, w, h = (_number(v, ann_file, f"{where}.bbox") for v in bbox)
    if w <= 0 or h <= 0:
        raise InputError(ann_file, f"{where}: degenerate bbox {bbox}")
    crowd = _flag(ann.get("iscrowd", 0), ann_file, f"{where}.iscrowd")
    return Object(cats[ann["category_id"]], (x, y, x + w, y + h), {"crowd": crowd})


def _parse_xml(path: Path) -> ET.Element:
    """The element tree of an XML file, each element carrying its start tag's line in ``attrib[LINE]`` (ElementTree
    keeps no positions; expat, which it parses with, knows them), so errors can name the line."""
    builder, parser = ET.TreeBuilder(), expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = lambda tag, attrs: builder.start(tag, {**attrs, LINE: str(parser.CurrentLineNumber)})
    parser.EndElementHandler, parser.CharacterDataHandler = builder.end, builder.data
    try:
        with open(path, "rb") as f:
            parser.ParseFile(f)
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read annotation file: {exc.strerror}") from None
    except expat.ExpatError as exc:
        raise InputError(path, f"invalid VOC XML: {exc}", exc.lineno) from None
    return builder.close()


def _line(element: ET.Element) -> int:
    return int(element.get(LINE))


def _voc_value(parent: ET.Element, path: str, xml_file: Path, where: str,
               parse: Callable[[str, Path, str, int], T]) -> T | None:
    """``parse(text, file, element path, line)`` of the element at ``path`` under ``parent``; None when it is absent
    or empty."""
    element = parent.find(path)
    if element is None or not (element.text or "").strip():
        return None
    return parse(element.text.strip(), xml_file, f"{where}{path}", _line(element))


@reader("voc")
def read_voc(root: str | Path, image_root: str | Path | None = None, image_set: str | None = None,
             skips: Skips = STRICT) -> Iterator[Frame]:
    """``root`` holds ``Annotations/`` and ``JPEGImages/`` (e.g. VOCdevkit/VOC2012); ``image_root`` is an image
    folder in place of ``JPEGImages/``; ``image_set`` names an ``ImageSets/Main/<set>.txt`` list, else every
    annotation is read. Accepted as the devkit defines them: <difficult>, <truncated>, <occluded> 0 or 1 (absent
    or empty: not set); <size> in whole pixels ("500.0" too; absent or 0: read from the image); <bndbox> numbers.
    Errors name the file, the line and the element (``object[2]/difficult``, 1-based as in XPath)."""
    root = Path(root)
    ann_dir, images = root / "Annotations", Path(image_root) if image_root else root / "JPEGImages"
    if not ann_dir.is_dir():
        raise InputError(ann_dir, "not a Pascal VOC dataset: directory missing")
    if image_set:
        set_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
        if not set_file.is_file():
            raise InputError(set_file, f"image set {image_set!r} not found")
        files = [ann_dir / f"{i}.xml" for i in set_file.read_text().split()]
    else:
        files = sorted(ann_dir.glob("*.xml"))
    for xml_file in files:
        with skips.sample(xml_file.stem):
            node = _parse_xml(xml_file)
            image = images / ((node.findtext("filename") or "").strip() or f"{xml_file.stem}.jpg")
            width, height = (_voc_value(node, f"size/{k}", xml_file, "", _pixels) for k in ("width", "height"))
            width, height = _sized_image(image, width, height, xml_file, "filename")
            yield Frame(xml_file.stem, image, width, height, tuple(_voc_objects(node, xml_file)), xml_file)


def _voc_objects(node: ET.Element, xml_file: Path) -> Iterator[Object]:
    for i, obj in enumerate(node.findall("object"), start=1):
        where, box, name = f"object[{i}]/", obj.find("bndbox"), (obj.findtext("name") or "").strip()
        if box is None or not name:
            raise InputError(xml_file, f"object[{i}]: needs <name> and <bndbox>", _line(obj))
        coords = [_voc_value(box, k, xml_file, f"{where}bndbox/", _number) for k in ("xmin", "ymin", "xmax", "ymax")]
        if None in coords:
            raise InputError(xml_file, f"{where}bndbox: needs <xmin>, <ymin>, <xmax> and <ymax>", _line(box))
        xmin, ymin, xmax, ymax = coords
        flags = {k: _voc_value(obj, k, xml_file, where, _flag) for k in ("difficult", "truncated", "occluded")}
        # VOC pixel indices are 1-based and inclusive: [xmin - 1, xmax) in 0-based continuous coordinates
        yield Object(name, (xmin - 1, ymin - 1, xmax, ymax), {k: v for k, v in flags.items() if v is not None}, line=_line(obj))


@reader("yolo")
def read_yolo(root: str | Path, split: str = "train", skips: Skips = STRICT) -> Iterator[Frame]:
    """``root`` holds ``data.yaml`` (``names``: a list or an id -> name mapping), ``images/<split>/`` and
    ``labels/<split>/`` (Ultralytics layout)."""
    root = Path(root)
    names = _yolo_names(root / "data.yaml")
    if not (root / "images" / split).is_dir():
        raise InputError(root / "images" / split, f"no images for split {split!r}: directory missing")
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


def _yolo_names(data_yaml: Path) -> dict[int, str]:
    """Class id -> name from ``data.yaml``'s ``names``: a list, or a mapping of class ids to names."""
    if not data_yaml.is_file():
        raise InputError(data_yaml, "not a YOLO dataset: data.yaml missing")
    try:
        spec = yaml.safe_load(data_yaml.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(data_yaml, f"invalid YAML: {getattr(exc, 'problem', exc)}", mark.line + 1 if mark else None) from None
    names = spec.get("names") if isinstance(spec, dict) else None
    if isinstance(names, list) and names:
        return dict(enumerate(names))
    if isinstance(names, dict) and names and all(str(k).isdigit() for k in names):
        return {int(k): v for k, v in names.items()}
    raise InputError(data_yaml, f"expected 'names': a list or a mapping of class ids to names, got {names!r}")


@reader("bdd100k")
def read_bdd100k(label_file: str | Path, image_root: str | Path, skips: Skips = STRICT) -> Iterator[Frame]:
    """BDD100K detection labels (``det_20`` json: a list of {name, attributes, labels[{category, box2d,
    attributes}]}); frames and boxes of other label types (lanes, drivable areas) are skipped. ``image_root`` is
    needed: BDD100K keeps images apart from labels (images/100k/<split>/)."""
    label_file = Path(label_file)
    frames = _load_json(label_file)
    if not isinstance(frames, list):
        raise InputError(label_file, "expected a list of frames")
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        with skips.sample(_sample_name(fr, "name", where)):
            _require(fr, ("name",), label_file, where)
            image = Path(image_root) / fr["name"]
            width, height = image_size(image, label_file)
            labels = fr.get("labels") or []
            if not isinstance(labels, list):
                raise InputError(label_file, f"{where}.labels: expected a list, got {type(labels).__name__}")
            objects = []
            for j, lab in enumerate(labels):
                at = f"{where}.labels[{j}]"
                box = _require(lab, (), label_file, at).get("box2d")
                if box is None:
                    continue
                _require(lab, ("category",), label_file, at)
                _require(box, (), label_file, f"{at}.box2d")
                x1, y1, x2, y2 = (_number(box.get(k), label_file, f"{at}.box2d.{k}") for k in ("x1", "y1", "x2", "y2"))
                if x2 <= x1 or y2 <= y1:
                    raise InputError(label_file, f"{at}: degenerate box2d {box}")
                attrs = _require(lab.get("attributes") or {}, (), label_file, f"{at}.attributes")
                attrs = {k: v for k, v in attrs.items() if k in ("occluded", "truncated", "crowd")}
                objects.append(Object(lab["category"], (x1, y1, x2, y2), attrs))
            yield Frame(Path(fr["name"]).stem, image, width, height, tuple(objects), label_file)


@reader("nuscenes")
def read_nuscenes(root: str | Path, version: str = "v1.0-trainval", cameras: tuple[str, ...] = nus.CAMERAS,
                  skips: Skips = STRICT) -> Iterator[Frame]:
    """One frame per keyframe image of each camera, in sample-table order. The 2D box of an annotation is its
    3D box projected and cut to the image (as mmdet3d's mono3d infos); the 3D box is kept in the camera frame
    in KITTI's convention (bottom centre, h w l, rotation about y); visibility and attribute ride along."""
    tables = nus.Tables(root, version)
    for name, exc in tables.unlinked:  # records of no sample: listed, never silently dropped
        skips.add(exc, name)
    for sample in tables.rows["sample"]:
        for cam in cameras:
            with skips.sample(f"{sample['token']}/{cam}"):
                tables.check(sample["token"])
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
                scene = tables.follow("sample", sample, "scene_token", "scene")["name"]
                yield Frame(Path(sd["filename"]).stem, tables.path(sd), int(sd["width"]), int(sd["height"]), tuple(objects),
                            tables.dir / "sample_annotation.json", group=scene)
