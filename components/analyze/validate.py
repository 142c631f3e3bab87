"""Check a dataset against its definition's class mapping and labeling standard.

Every violation is listed with its file, line (where the format has lines), frame and rule; nothing is
fixed or dropped. Rules: ``unreadable`` (a frame that cannot be parsed), ``unmapped_class``, ``min_box``,
``outside_image``, ``required_field``, ``occlusion_level``, ``truncation``.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterator

from admlops.components.convert.records import Frame, Skips, check_reader_options, read_frames
from admlops.definition import IGNORE, DatasetDefinition, load_definition
from admlops.errors import InputError

EDGE_TOLERANCE = 1.0  # pixels a box may reach past the image border (rounding in many tools)


def _frames(fmt: str, src: str | Path, violations: list, **reader_args) -> Iterator[Frame]:
    """Every readable frame of ``src``. Frame by frame, so one bad file does not hide the others: each unreadable
    sample (and a dataset the reader cannot open at all) becomes an ``unreadable`` violation."""
    skips = Skips(strict=False)
    try:
        yield from read_frames(fmt, src, skips, **reader_args)
    except InputError as exc:
        violations.append({"file": exc.path, "line": exc.line, "frame": None, "rule": "unreadable", "message": exc.message})
    violations += [{"file": s["file"], "line": s["line"], "frame": s["sample"], "rule": "unreadable", "message": s["message"]}
                   for s in skips.items]


def check_frame(frame: Frame, defn: DatasetDefinition, mapping: dict[str, str]) -> list[dict]:
    std = defn.labeling
    out = []

    def bad(obj, rule, message):
        out.append({"file": str(frame.source), "line": obj.line, "frame": frame.id, "label": obj.label, "rule": rule, "message": message})

    for obj in frame.objects:
        if obj.label not in mapping:
            bad(obj, "unmapped_class", f"class {obj.label!r} has no mapping in {defn.name!r}")
            continue
        x1, y1, x2, y2 = obj.bbox
        if x1 < -EDGE_TOLERANCE or y1 < -EDGE_TOLERANCE or x2 > frame.width + EDGE_TOLERANCE or y2 > frame.height + EDGE_TOLERANCE:
            bad(obj, "outside_image", f"box {obj.bbox} extends past the {frame.width}x{frame.height} image")
        if mapping[obj.label] == IGNORE or obj.attributes.get("crowd"):
            continue
        if x2 - x1 < std.min_box_width or y2 - y1 < std.min_box_height:
            bad(obj, "min_box", f"box {x2 - x1:.1f}x{y2 - y1:.1f} px is below the minimum "
                f"{std.min_box_width:g}x{std.min_box_height:g} px")
        for name in std.required_fields:
            if name not in obj.attributes:
                bad(obj, "required_field", f"missing required field {name!r}")
        occ = obj.attributes.get("occluded")
        if std.occlusion_levels and occ is not None and int(occ) not in std.occlusion_levels:
            bad(obj, "occlusion_level", f"occlusion level {occ} is not one of {sorted(std.occlusion_levels)}")
        trunc = obj.attributes.get("truncated")
        if trunc is not None and not 0.0 <= float(trunc) <= std.max_truncation:
            bad(obj, "truncation", f"truncation {trunc} outside [0, {std.max_truncation:g}]")
    return out


def validate(fmt: str, src: str | Path, definition: str | Path | DatasetDefinition, **reader_args) -> dict:
    """A report of every violation in the dataset ``src`` (format ``fmt``) against ``definition``."""
    check_reader_options(fmt, reader_args)
    defn = load_definition(definition)
    mapping = defn.mapping(fmt)
    violations: list[dict] = []
    frames = objects = 0
    for frame in _frames(fmt, src, violations, **reader_args):
        frames += 1
        objects += len(frame.objects)
        violations += check_frame(frame, defn, mapping)
    return {
        "dataset": str(src), "format": fmt, "definition": defn.name, "frames": frames, "objects": objects,
        "violations": violations, "by_rule": dict(Counter(v["rule"] for v in violations)),
    }
