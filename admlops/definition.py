"""Dataset definitions (configs/datasets/*.yaml): the task's categories and how each source maps onto them.

A source class maps to a category name, or to ``ignore``: an ignore region that is neither a positive
nor a negative in training, and whose detections count as neither true nor false in evaluation (KITTI's
DontCare, and classes the task does not cover such as Van for a Car detector).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from admlops.errors import InputError

IGNORE = "ignore"


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    color: tuple[int, int, int]
    description: str = ""
    attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelingStandard:
    """What a label must satisfy: the document a labeling vendor works from (``admlops data spec``)."""

    min_box_width: float = 0.0  # pixels
    min_box_height: float = 0.0
    occlusion_levels: dict = field(default_factory=dict)  # level -> meaning
    max_truncation: float = 1.0
    required_fields: tuple[str, ...] = ()  # attributes every labelled object must carry


@dataclass(frozen=True)
class DatasetDefinition:
    name: str
    task: str
    categories: tuple[Category, ...]
    sources: dict[str, dict[str, str]]
    path: str = ""
    labeling: LabelingStandard = LabelingStandard()
    recording: dict = field(default_factory=dict)  # recorded drives: topics, frames, screening (components/ingest)

    def mapping(self, source: str) -> dict[str, str]:
        """Source class -> category name or ``ignore``."""
        if source not in self.sources:
            raise InputError(self.path, f"no class mapping for source {source!r}; defined: {', '.join(self.sources)}")
        return self.sources[source]


def load_definition(name_or_path: str | Path | DatasetDefinition) -> DatasetDefinition:
    """A definition by name or path (an already-loaded one is returned as it is)."""
    if isinstance(name_or_path, DatasetDefinition):
        return name_or_path
    from admlops.configs import resolve

    path = resolve("datasets", name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputError(path, f"invalid YAML: {exc}", mark.line + 1 if mark else None) from None
    if not isinstance(raw, dict):
        raise InputError(path, f"expected a mapping at the top level, got {type(raw).__name__}")
    for key in ("name", "task", "categories", "sources"):
        if key not in raw:
            raise InputError(path, f"missing required key {key!r}")
    categories = []
    for i, cat in enumerate(raw["categories"]):
        try:
            categories.append(Category(int(cat["id"]), str(cat["name"]), tuple(int(c) for c in cat["color"]),
                                       str(cat.get("description", "")), tuple(cat.get("attributes", ()))))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"categories[{i}]: expected id, name and color [r, g, b] ({exc})") from None
    names = [c.name for c in categories]
    if len(set(names)) != len(names) or len({c.id for c in categories}) != len(categories):
        raise InputError(path, "category names and ids must be unique")
    sources = {}
    for source, mapping in raw["sources"].items():
        for cls, target in mapping.items():
            if target != IGNORE and target not in names:
                raise InputError(path, f"sources.{source}.{cls}: expected one of {names + [IGNORE]}, got {target!r}")
        sources[source] = {str(k): str(v) for k, v in mapping.items()}
    lab = raw.get("labeling") or {}
    try:
        labeling = LabelingStandard(
            float(lab.get("min_box", {}).get("width", 0)), float(lab.get("min_box", {}).get("height", 0)),
            {int(k): str(v) for k, v in (lab.get("occlusion_levels") or {}).items()},
            float(lab.get("max_truncation", 1.0)), tuple(lab.get("required_fields", ())),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(path, f"labeling: expected min_box {{width, height}}, occlusion_levels {{level: meaning}}, "
                         f"max_truncation and required_fields ({exc})") from None
    recording = raw.get("recording") or {}
    if not isinstance(recording, dict):
        raise InputError(path, f"recording: expected a mapping, got {type(recording).__name__}")
    return DatasetDefinition(str(raw["name"]), str(raw["task"]), tuple(categories), sources, str(path), labeling,
                             recording)
