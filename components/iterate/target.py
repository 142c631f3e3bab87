"""What a team is short of, and what a frame costs to label: target classes and predicted boxes for ``select``.

**Boxes.** A frame's predicted boxes are the objects the model detects in it: its boxes whose top class score is
at least ``confident`` (score's threshold, 0.3: also the pre-annotations'), with the boxes of one object merged.
mmdet's NMS works per class, so one cyclist can come out as a Cyclist box and a Pedestrian box; taken in order of
top score, a box overlapping an object already kept at IoU >= ``MERGE`` joins it, and the object's class vector is
the elementwise maximum of its boxes' vectors (without vectors: its boxes' scores at their labels). An object's
class is its vector's largest entry. The count is what the labeling vendor will draw and bill, the unit of a
budget in boxes; a frame with no detected object still costs one box (the vendor opens it, and it may hold
objects the model missed).

**Targets.** ``Cyclist=0.3`` asks for Cyclists to make up 0.3 of the chosen boxes; ``Cyclist`` alone is share 1
(as many as the budget buys). The evidence for a target class is the model's score for that class on every
detected object, not only where it is the top class. Each predicted box is one box of some class, so its class
vector is normalised to sum 1 (a sigmoid head scores the classes independently, and how sure it is that an object
is there at all is the same factor in every entry): a box scored Pedestrian 0.6 / Cyclist 0.35 / Car 0.05 is 0.35
of an expected Cyclist. A frame's expected boxes of class c, the sum of that over its objects, add up over the
classes to its predicted box count. Why normalised: measured on bench/iterate_bench.py's rare-class pool, the start
model (Cyclist AP@0.5 0.27, its cyclists mostly boxed as Cars) scores Cyclist 0.145 on true cyclists and 0.107 /
0.118 on cars / pedestrians; normalised, 0.23 against 0.14 / 0.15, and the 100 boxes chosen held 45% Cyclists
against 37% with the raw scores (the pool: 20%).

Where infer fitted a class probe (``probe.py``: a class-balanced linear classifier on the backbone's features of
the current dataset's labeled boxes), an object's class vector is the probe's probabilities instead of the head's
scores: the head of a model trained with few of a class is biased against it, the probe weighs every class the
same. Measured on the rare-class pool with every object in any class's colour (a Cyclist told from a Pedestrian
by its wheels and size only): the head's normalised Cyclist score separates true Cyclists from true Pedestrians
with a ROC AUC of 0.56, the probe's with 0.89. ``select`` (see there) turns the expected boxes into the frame's
value while a target's share of the chosen boxes is below what was asked.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from admlops.components.iterate.predictions import Detections
from admlops.geometry import box_iou
from admlops.errors import UsageError

MERGE = 0.5  # IoU at or above which boxes of different labels are one object


@dataclass(frozen=True)
class FrameBoxes:
    """A frame's predicted objects: their class vectors [n, C] (n = the predicted box count)."""

    vectors: np.ndarray

    @property
    def count(self) -> int:
        return len(self.vectors)

    @property
    def cost(self) -> int:
        """Boxes a budget in boxes pays for the frame: its predicted count, at least 1."""
        return max(self.count, 1)

    def by_class(self) -> np.ndarray:
        """[C] predicted boxes per class (each object counted once, as its top class)."""
        n = self.vectors.shape[1]
        return np.bincount(self.vectors.argmax(axis=1), minlength=n) if self.count else np.zeros(n, dtype=np.int64)

    def expected(self) -> np.ndarray:
        """[C] expected boxes per class: the sum over objects of the class's share of the object's class vector."""
        total = self.vectors.sum(axis=1, keepdims=True)
        return np.divide(self.vectors, total, out=np.zeros_like(self.vectors), where=total > 0).sum(axis=0)


def frame_boxes(dets: Detections, num_classes: int, confident: float) -> FrameBoxes:
    """The detected objects of ``dets`` (top score >= ``confident``), boxes of one object merged (module doc)."""
    d = dets.confident(confident)
    if d.probe_scores is not None and d.probe_scores.shape[1] == num_classes:
        vectors = d.probe_scores
    elif d.class_scores is not None and d.class_scores.shape[1] == num_classes:
        vectors = d.class_scores
    else:
        vectors = np.zeros((len(d.scores), num_classes))
        vectors[np.arange(len(d.scores)), d.labels] = d.scores
    order = np.argsort(-d.scores, kind="stable")
    iou = box_iou(d.boxes, d.boxes)
    heads, merged = [], []
    for i in order:
        joined = next((k for k, h in enumerate(heads) if iou[i, h] >= MERGE), None)
        if joined is None:
            heads.append(i)
            merged.append(vectors[i].copy())
        else:
            merged[joined] = np.maximum(merged[joined], vectors[i])
    return FrameBoxes(np.array(merged).reshape(-1, num_classes))


def spec_items(specs: list[str] | str | None) -> list[str]:
    """The non-empty items of a list (the CLI's repeated option) or of one comma-separated string (a pipeline
    parameter), stripped."""
    return [s.strip() for s in (specs.split(",") if isinstance(specs, str) else specs or []) if s.strip()]


def parse_targets(specs: list[str] | str | None) -> dict[str, float]:
    """``CLASS[=SHARE]`` items (a list, or one comma-separated string: the pipeline parameter) as class -> share;
    the share is the wanted fraction of the chosen boxes, in (0, 1], default 1. A malformed item, a share outside
    (0, 1] and a class named twice are UsageErrors."""
    targets: dict[str, float] = {}
    for item in spec_items(specs):
        name, sep, share = (x.strip() for x in item.partition("="))
        try:
            value = float(share) if sep else 1.0
        except ValueError:
            raise UsageError(f"target {item!r}: expected CLASS or CLASS=SHARE with SHARE a number in (0, 1]") from None
        if not name:
            raise UsageError(f"target {item!r}: expected CLASS or CLASS=SHARE (no class named)")
        if not 0.0 < value <= 1.0:
            raise UsageError(f"target {item!r}: the share {share} is outside (0, 1] (the wanted fraction of the chosen "
                             "boxes)")
        if name in targets:
            raise UsageError(f"target class {name!r} is named twice")
        targets[name] = value
    return targets


def check_targets(targets: dict[str, float], classes: list[str], definition: list[str] | None = None,
                  definition_name: str = "") -> None:
    """Every target class is a category of the dataset definition (``definition``'s names, when known) and a class
    the model predicts (``classes``); else a UsageError naming it and the known ones."""
    known = definition if definition is not None else classes
    where = f"the dataset definition {definition_name}" if definition is not None else "the model"
    for name in targets:
        if name not in known:
            raise UsageError(f"target class {name!r} is not a class of {where}; expected one of {', '.join(known)}")
        if name not in classes:
            raise UsageError(f"target class {name!r} is not a class the model predicts ({', '.join(classes)})")
