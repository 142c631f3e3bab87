"""Labeling-tool formats: a task of selected frames with the model's boxes as pre-annotations goes out, the
vendor's labels come back. One module per tool (``cvat``, ``labelstudio``), registered by name in ``FORMATS``.

A format writes a ``Task`` into a folder (``write``) and reads returned labels into ``records.Frame`` records
plus the structural problems it found (``read``): malformed values, unknown frames, unsupported shapes, each
with file and line; and, where the format has more to say than a line (a Label Studio task index and result
id), where each object came from, keyed by (frame, line). The labeling-standard checks
(``analyze.validate.check_frame``) are the same for all formats and run in ``task.import_labels``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from admlops.components.convert.records import Frame
from admlops.definition import IGNORE, DatasetDefinition
from admlops.registry import Registry

IGNORE_COLOR = (128, 128, 128)


@dataclass(frozen=True)
class PreBox:
    """A pre-annotation: the model's box (x1, y1, x2, y2 pixels), class name and score."""

    label: str
    bbox: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class TaskFrame:
    frame: str  # the pool's frame id
    file: str  # the image's name in the task (under images/)
    width: int
    height: int
    boxes: tuple[PreBox, ...] = ()


@dataclass(frozen=True)
class Task:
    """What goes to the labeling tool: frames, pre-annotations, the labeling standard, and who pre-annotated."""

    name: str
    definition: DatasetDefinition
    frames: tuple[TaskFrame, ...]
    model: str = ""  # e.g. rtmdet-tiny-kitti@v0123..., the pre-annotations' model version

    @property
    def labels(self) -> list[str]:
        """The labels a box may carry: the definition's categories and the ignore region."""
        return [c.name for c in self.definition.categories] + [IGNORE]

    @property
    def attributes(self) -> list[str]:
        """Attributes asked of every labelled object: the required fields, then the categories' other attributes."""
        names = list(self.definition.labeling.required_fields)
        return names + [a for c in self.definition.categories for a in c.attributes if a not in names]

    def by_file(self) -> dict[str, TaskFrame]:
        return {f.file: f for f in self.frames}


def hex_color(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def color_of(task: Task, label: str) -> str:
    return hex_color(next((c.color for c in task.definition.categories if c.name == label), IGNORE_COLOR))


def violation(file, line, frame, rule: str, message: str, label: str | None = None, **where) -> dict:
    """One problem in returned labels, in ``validate``'s shape (plus where in the format it is, e.g. task/result)."""
    return {"file": str(file), "line": line, "frame": frame, "label": label, "rule": rule, "message": message, **where}


def attribute_value(name: str, text) -> float | int | str:
    """A returned attribute value typed as the standard means it: ``occluded`` a level (int), ``truncated`` a
    fraction (float), anything else a number if it reads as one. A ValueError if an occlusion level or a
    truncation is not a number."""
    if name == "occluded":
        value = float(text)
        if value != int(value):
            raise ValueError(f"occlusion level {text!r} is not a whole number")
        return int(value)
    if name == "truncated":
        return float(text)
    try:
        return float(text)
    except (TypeError, ValueError):
        return str(text)


def check_box(file, line, frame: TaskFrame, label: str, bbox) -> list[dict]:
    """A box must have positive width and height (the standard's own checks run later)."""
    x1, y1, x2, y2 = bbox
    if x2 <= x1 or y2 <= y1:
        return [violation(file, line, frame.frame, "degenerate", f"box {tuple(bbox)} has no area", label)]
    return []


def missing_frames(file, line, task: Task, seen: set[str]) -> list[dict]:
    """Every task frame the returned labels do not cover: a frame left out is not labelled (an empty frame would
    teach the model there is nothing in it), so it is a problem, not a pass."""
    return [violation(file, line, f.frame, "missing_frame", f"frame {f.frame} ({f.file}) of the task is not in the "
                      "returned labels") for f in task.frames if f.frame not in seen]


@dataclass(frozen=True)
class LabelFormat:
    name: str
    write: Callable[[Task, Path], list[str]]  # the task into a folder; returns the files written (relative)
    read: Callable[[Path, Task, Path], "Read"]  # (returned file, task, image dir)
    returned: str  # what to send back, for messages


Where = dict[tuple[str, int | None], dict]  # (frame, line) -> where else an object is, e.g. {"task": 3, "result": "r1"}
Read = tuple[list[Frame], list[dict], Where]
FORMATS: Registry[LabelFormat] = Registry("label format", {"cvat": "admlops.components.iterate.formats.cvat",
                                                          "labelstudio": "admlops.components.iterate.formats.labelstudio"})


def register(fmt: LabelFormat) -> LabelFormat:
    FORMATS.register(fmt.name)(fmt)
    return fmt


def get_format(name: str) -> LabelFormat:
    return FORMATS.get(name)


