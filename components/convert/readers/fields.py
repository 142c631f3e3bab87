"""What the readers check in label files, one way for all: a JSON file and its objects' keys, finite numbers,
whole pixel sizes, 0/1 flags, and an image's size (declared, or read from the image). Each error names the file,
the element (``images[3].width``) and, where there is one, the line."""
from __future__ import annotations

import json
from pathlib import Path

from admlops.components.convert.records import image_size
from admlops.errors import InputError


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None


def require(record, keys: tuple[str, ...], path: Path, where: str) -> dict:
    """``record`` when it is a JSON object holding every one of ``keys``; else an InputError naming the element
    (``images[3]: missing 'file_name'``)."""
    if not isinstance(record, dict):
        raise InputError(path, f"{where}: expected an object, got {type(record).__name__}")
    for key in keys:
        if key not in record:
            raise InputError(path, f"{where}: missing {key!r}")
    return record


def sample_name(record, key: str, where: str) -> str:
    """What a JSON sample is listed as when skipped: its ``key`` (file name) if it has one, else its element."""
    return str(record[key]) if isinstance(record, dict) and key in record else where


def number(value, path: Path, where: str, line: int | None = None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{where}: expected a number, got {value!r}", line) from None
    if out != out or out in (float("inf"), float("-inf")):
        raise InputError(path, f"{where}: expected a finite number, got {value!r}", line)
    return out


def pixels(value, path: Path, where: str, line: int | None = None) -> int:
    """An image width or height: a whole number >= 0, also written as an integral float ("500.0", as some
    exporters write it); "500.5" or "-1" is an error naming ``where``."""
    n = number(value, path, where, line)
    if not n.is_integer() or n < 0:
        raise InputError(path, f"{where}: expected a whole number of pixels, got {value!r}", line)
    return int(n)


def flag(value, path: Path, where: str, line: int | None = None) -> int:
    """A 0/1 flag as the VOC devkit (difficult, truncated, occluded) and COCO (iscrowd) define them. Anything else,
    e.g. "Unspecified" (which VOC only defines for <pose>), is an error naming ``where``."""
    if str(value).strip() not in ("0", "1"):
        raise InputError(path, f"{where}: expected 0 or 1, got {value!r}", line)
    return int(value)


def sized_image(image: Path, width, height, referrer: Path, where: str) -> tuple[int, int]:
    """(width, height): as the labels declare them (the image only checked to exist), or, where they declare
    none (absent or 0), the image's own, read whole."""
    if not width or not height:
        return image_size(image, referrer)
    if not image.is_file():
        raise InputError(referrer, f"{where}: label without image: expected {image}")
    return width, height
