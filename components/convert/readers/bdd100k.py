"""BDD100K detection json (a list of frames with ``labels[].box2d``) and its image folder."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from admlops.components.convert.readers.fields import load_json, number, require, sample_name
from admlops.components.convert.records import READERS, STRICT, Frame, Object, Skips, image_size
from admlops.errors import InputError


@READERS.register("bdd100k")
def read_bdd100k(label_file: str | Path, image_root: str | Path, skips: Skips = STRICT) -> Iterator[Frame]:
    """BDD100K detection labels (``det_20`` json: a list of {name, attributes, labels[{category, box2d,
    attributes}]}); frames and boxes of other label types (lanes, drivable areas) are skipped. ``image_root`` is
    needed: BDD100K keeps images apart from labels (images/100k/<split>/)."""
    label_file = Path(label_file)
    frames = load_json(label_file)
    if not isinstance(frames, list):
        raise InputError(label_file, "expected a list of frames")
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        with skips.sample(sample_name(fr, "name", where)):
            require(fr, ("name",), label_file, where)
            image = Path(image_root) / fr["name"]
            width, height = image_size(image, label_file)
            labels = fr.get("labels") or []
            if not isinstance(labels, list):
                raise InputError(label_file, f"{where}.labels: expected a list, got {type(labels).__name__}")
            objects = []
            for j, lab in enumerate(labels):
                at = f"{where}.labels[{j}]"
                box = require(lab, (), label_file, at).get("box2d")
                if box is None:
                    continue
                require(lab, ("category",), label_file, at)
                require(box, (), label_file, f"{at}.box2d")
                x1, y1, x2, y2 = (number(box.get(k), label_file, f"{at}.box2d.{k}") for k in ("x1", "y1", "x2", "y2"))
                if x2 <= x1 or y2 <= y1:
                    raise InputError(label_file, f"{at}: degenerate box2d {box}")
                attrs = require(lab.get("attributes") or {}, (), label_file, f"{at}.attributes")
                attrs = {k: v for k, v in attrs.items() if k in ("occluded", "truncated", "crowd")}
                objects.append(Object(lab["category"], (x1, y1, x2, y2), attrs))
            yield Frame(Path(fr["name"]).stem, image, width, height, tuple(objects), label_file)
