"""COCO detection: one annotation json (``bbox`` = [x, y, w, h]) and an image folder."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from admlops.components.convert.readers.fields import flag, load_json, number, pixels, require, sample_name, sized_image
from admlops.components.convert.records import READERS, STRICT, Frame, Object, Skips
from admlops.errors import InputError


@READERS.register("coco")
def read_coco(ann_file: str | Path, image_root: str | Path | None = None, skips: Skips = STRICT) -> Iterator[Frame]:
    """``ann_file`` is a COCO detection json; images are under ``image_root`` (default: beside the json). An image
    or annotation record that is not whole is a bad sample; so is an annotation of an image not in ``images``."""
    ann_file = Path(ann_file)
    data = load_json(ann_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise InputError(ann_file, f"not a COCO detection file: expected a list {key!r}")
    root = Path(image_root) if image_root else ann_file.parent
    cats = {}
    for j, cat in enumerate(data["categories"]):
        cats[require(cat, ("id", "name"), ann_file, f"categories[{j}]")["id"]] = cat["name"]
    image_ids = {im["id"] for im in data["images"] if isinstance(im, dict) and "id" in im}
    by_image: dict[int, list] = {}
    for i, ann in enumerate(data["annotations"]):
        with skips.sample(f"annotations[{i}]"):
            where = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
            if require(ann, ("image_id",), ann_file, where)["image_id"] not in image_ids:
                raise InputError(ann_file, f"{where}: image_id {ann['image_id']!r} is not in images")
            by_image.setdefault(ann["image_id"], []).append((where, ann))
    for n, im in enumerate(data["images"]):
        where = f"images[{n}]"
        with skips.sample(sample_name(im, "file_name", where)):
            require(im, ("id", "file_name"), ann_file, where)
            objects = tuple(_coco_object(ann, ann_file, at, cats) for at, ann in by_image.get(im["id"], []))
            image = root / im["file_name"]
            width, height = (pixels(im.get(k) or 0, ann_file, f"{where}.{k}") for k in ("width", "height"))
            width, height = sized_image(image, width, height, ann_file, where)
            yield Frame(Path(im["file_name"]).stem, image, width, height, objects, ann_file)


def _coco_object(ann: dict, ann_file: Path, where: str, cats: dict) -> Object:
    """One COCO annotation (``bbox`` = [x, y, w, h]) as an Object; an error naming ``where`` when it is not whole."""
    require(ann, ("category_id", "bbox"), ann_file, where)
    if ann["category_id"] not in cats:
        raise InputError(ann_file, f"{where}: category_id {ann['category_id']!r} is not in categories")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise InputError(ann_file, f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
    x, y, w, h = (number(v, ann_file, f"{where}.bbox") for v in bbox)
    if w <= 0 or h <= 0:
        raise InputError(ann_file, f"{where}: degenerate bbox {bbox}")
    crowd = flag(ann.get("iscrowd", 0), ann_file, f"{where}.iscrowd")
    return Object(cats[ann["category_id"]], (x, y, x + w, y + h), {"crowd": crowd})
