"""The one record model between dataset readers and writers (N readers + M writers, not N x M converters).

A reader turns a dataset on disk into ``Frame`` records in its own class vocabulary; a writer maps
classes through a dataset definition and writes a target format. Every record remembers the file (and
line) it came from, so later checks can name it.
"""
from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from admlops.errors import InputError


@dataclass(frozen=True)
class Object:
    label: str  # class name in the source dataset's own vocabulary
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the frame's image
    attributes: dict = field(default_factory=dict)  # truncated, occluded, crowd, difficult, ...
    box3d: dict | None = None  # KITTI camera convention: dimensions (h, w, l), location (x, y, z), rotation_y
    line: int | None = None  # line in the source file, for line-based formats


@dataclass(frozen=True)
class Frame:
    id: str
    image: Path
    width: int
    height: int
    objects: tuple[Object, ...]
    source: Path  # the label file this frame came from
    calib: dict | None = None
    lidar: Path | None = None
    group: str | None = None  # frames that must land in one split (a nuScenes scene); None: the frame alone


class Skips:
    """Bad samples met while converting. Strict: the first one raises (its InputError names file and line).
    Otherwise each is recorded with its file, line and message, the sample is left out, and ``write`` lists
    them all, so nothing is dropped silently (count skipped = count reported)."""

    def __init__(self, strict: bool = True):
        self.strict, self.items = strict, []

    def add(self, exc: InputError, sample: str) -> None:
        if self.strict:
            raise exc
        self.items.append({"sample": sample, "file": exc.path, "line": exc.line, "message": exc.message})
        print(f"skipped {sample}: {exc}", file=sys.stderr)

    @contextlib.contextmanager
    def sample(self, name: str):
        """Run one sample's reading; an InputError skips it (or raises when strict)."""
        try:
            yield
        except InputError as exc:
            self.add(exc, name)

    def report(self) -> dict:
        return {"skipped": len(self.items), "samples": self.items}

    def write(self, out_dir: Path) -> None:
        (Path(out_dir) / "skipped.json").write_text(json.dumps(self.report(), indent=2))


STRICT = Skips(strict=True)
Reader = Callable[..., Iterator[Frame]]
READERS: dict[str, Reader] = {}


def reader(name: str) -> Callable[[Reader], Reader]:
    """Register a reader under a format name (``kitti``, ``coco``, ``voc``, ``yolo``, ``bdd100k``)."""

    def register(fn: Reader) -> Reader:
        READERS[name] = fn
        return fn

    return register


def image_size(path: Path, referrer: Path) -> tuple[int, int]:
    """(width, height) of an image, checked whole (a truncated or corrupt file is an error naming it)."""
    if not path.is_file():
        raise InputError(referrer, f"label without image: expected {path}")
    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                im.verify()  # every chunk's CRC and the end marker: a truncated PNG fails, without inflating pixels
            else:
                im.load()
            return im.size
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(path, f"unreadable image: {exc}") from None
