"""The one record model between dataset readers and writers (N readers + M writers, not N x M converters).

A reader turns a dataset on disk into ``Frame`` records in its own class vocabulary; a writer maps
classes through a dataset definition and writes a target format. Every record remembers the file (and
line) it came from, so later checks can name it.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from PIL import Image

from admlops.errors import InputError, UsageError
from admlops.registry import Registry

A, T = TypeVar("A"), TypeVar("T")


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
    them all, so nothing is dropped silently (count skipped = count reported).

    Two ways in, one record: ``sample`` wraps a sample read in this process; ``passed`` consumes the results
    of pool jobs wrapped by ``guarded`` (a worker returns its InputError instead of raising it)."""

    def __init__(self, strict: bool = True):
        self.strict, self.items = strict, []

    def add(self, exc: InputError, sample: str) -> None:
        """Record ``exc`` as the reason ``sample`` is left out; strict: raise it."""
        if self.strict:
            raise exc
        self.items.append({"sample": sample, "file": exc.path, "line": exc.line, "message": exc.message})
        print(f"skipped {sample}: {exc}", file=sys.stderr)

    @contextlib.contextmanager
    def sample(self, name: str) -> Iterator[None]:
        """Run one sample's reading; an InputError skips it (or raises when strict)."""
        try:
            yield
        except InputError as exc:
            self.add(exc, name)

    def passed(self, samples: Iterable[str], results: Iterable[T | InputError]) -> Iterator[T]:
        """The results of ``guarded`` pool jobs, one per name in ``samples`` (in order), less the InputErrors,
        each of which is added under its sample's name (raised when strict)."""
        for name, result in zip(samples, results, strict=True):
            if isinstance(result, InputError):
                self.add(result, name)
            else:
                yield result

    def report(self) -> dict:
        return {"skipped": len(self.items), "samples": self.items}

    def write(self, out_dir: Path) -> None:
        (Path(out_dir) / "skipped.json").write_text(json.dumps(self.report(), indent=2))


class guarded(Generic[A, T]):  # noqa: N801 - used like a decorator
    """A pool job that returns its InputError instead of raising it: the error crosses the process boundary as
    a value (InputError pickles), the pool keeps going, and the parent's ``Skips.passed`` decides."""

    def __init__(self, fn: Callable[[A], T]):
        self.fn = fn

    def __call__(self, args: A) -> T | InputError:
        try:
            return self.fn(args)
        except InputError as exc:
            return exc


STRICT = Skips(strict=True)
Reader = Callable[..., Iterator[Frame]]
# Dataset readers by format name, each registered (``@READERS.register("coco")``) by its module in
# components/convert/readers/. A reader's first parameter is the dataset, ``skips`` its Skips; its other keyword
# parameters are its options (a parameter without a default is one it needs).
READERS: Registry[Reader] = Registry("dataset format", {
    "bdd100k": "admlops.components.convert.readers.bdd100k",
    "coco": "admlops.components.convert.readers.coco",
    "kitti": "admlops.components.convert.readers.kitti",
    "nuscenes": "admlops.components.convert.readers.nuscenes",
    "voc": "admlops.components.convert.readers.voc",
    "yolo": "admlops.components.convert.readers.yolo",
})


def check_reader_options(fmt: str, options: dict) -> None:
    """A UsageError (exit 2) naming the format or the option when ``fmt``'s reader cannot take ``options``, so
    a wrong option is refused before any reading instead of escaping as a TypeError or being ignored."""
    params = list(inspect.signature(READERS.get(fmt)).parameters.values())[1:]
    takes = {p.name: p.default is p.empty for p in params if p.name != "skips"}  # option -> required
    for name in options:
        if name not in takes:
            raise UsageError(f"the {fmt} reader takes no option {name!r}; it takes "
                             f"{', '.join(repr(n) for n in takes) or 'none'}")
    for name, required in takes.items():
        if required and options.get(name) is None:
            raise UsageError(f"the {fmt} reader needs option {name!r}")


def read_frames(fmt: str, src: str | Path, skips: Skips = STRICT, **options) -> Iterator[Frame]:
    """The frames of dataset ``src`` in format ``fmt``, read with the reader's ``options`` (checked first)."""
    check_reader_options(fmt, options)
    return READERS.get(fmt)(src, skips=skips, **options)


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
