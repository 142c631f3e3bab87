"""YOLO/Ultralytics: ``images/**``, ``labels/**/*.txt`` ("class cx cy w h", normalised), ``data.yaml`` names."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import yaml

from admlops.components.convert.readers.fields import number
from admlops.components.convert.records import READERS, STRICT, Frame, Object, Skips, image_size
from admlops.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@READERS.register("yolo")
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
                cx, cy, w, h = (number(v, label, f"field {i}", lineno) for i, v in enumerate(fields[1:], start=2))
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
