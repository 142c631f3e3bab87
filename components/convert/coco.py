"""COCO detection writer: ``Frame`` records -> the COCO dataset layout that mmdet and evaluate read.

Output layout (the ``Dataset`` artifact)::

    images/<file>               hard links (or copies) of the source images
    annotations/train.json      COCO: images, annotations (bbox xywh, iscrowd), categories
    annotations/val.json
    splits/train.txt, val.txt   frame ids, one per line
    summary.json                counts per split and class, categories, palette, source, extra records

Classes mapped to ``ignore`` by the dataset definition (DontCare, Van, ...) and crowd boxes become
``iscrowd=1`` annotations, one per category, so mmdet skips them in training and COCO evaluation counts
detections inside them as neither true nor false positives.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from admlops.components.convert.records import Frame
from admlops.definition import IGNORE, DatasetDefinition
from admlops.errors import InputError
from admlops.localfs import atomic_dir, link_or_copy

SPLITS = ("train", "val")


def write_coco(
    frames: Iterable[Frame],
    out: str | Path,
    definition: DatasetDefinition,
    source: str,
    split_of: Callable[[Frame], str],
    extra: dict | None = None,
) -> dict:
    """Write ``frames`` (classes mapped by ``definition.mapping(source)``) under ``out``, atomically."""
    mapping = definition.mapping(source)
    cat_ids = {c.name: c.id for c in definition.categories}
    categories = [{"id": c.id, "name": c.name} for c in definition.categories]
    coco = {s: {"images": [], "annotations": [], "categories": categories} for s in SPLITS}
    counts = {s: {c.name: 0 for c in definition.categories} | {IGNORE: 0} for s in SPLITS}
    names: dict[str, Path] = {}
    with atomic_dir(out) as tmp:
        for sub in ("images", "annotations", "splits"):
            (tmp / sub).mkdir()
        for image_id, frame in enumerate(frames, start=1):
            s = split_of(frame)
            file_name = f"images/{frame.image.name}"
            if names.setdefault(file_name, frame.image) != frame.image:
                raise InputError(frame.source, f"two frames use the image name {frame.image.name!r} ({names[file_name]})")
            link_or_copy(frame.image, tmp / file_name)
            coco[s]["images"].append({"id": image_id, "file_name": file_name, "width": frame.width, "height": frame.height})
            anns = coco[s]["annotations"]
            for obj in frame.objects:
                if obj.label not in mapping:
                    raise InputError(frame.source, f"class {obj.label!r} has no mapping in dataset definition "
                                     f"{definition.name!r} ({definition.path})", obj.line)
                target = IGNORE if obj.attributes.get("crowd") else mapping[obj.label]
                left, top = max(obj.bbox[0], 0.0), max(obj.bbox[1], 0.0)
                right, bottom = min(obj.bbox[2], frame.width), min(obj.bbox[3], frame.height)
                if right <= left or bottom <= top:
                    raise InputError(frame.source, f"a {obj.label} box {obj.bbox} lies outside the "
                                     f"{frame.width}x{frame.height} image", obj.line)
                box = [left, top, right - left, bottom - top]
                counts[s][target] += 1
                targets = definition.categories if target == IGNORE else [c for c in definition.categories if c.name == target]
                for cat in targets:
                    anns.append({
                        "id": len(anns) + 1, "image_id": image_id, "category_id": cat_ids[cat.name], "bbox": box,
                        "area": box[2] * box[3], "iscrowd": int(target == IGNORE),
                        "source": {"label": obj.label, **obj.attributes},
                    })
        for s in SPLITS:
            (tmp / "annotations" / f"{s}.json").write_text(json.dumps(coco[s]))
            (tmp / "splits" / f"{s}.txt").write_text("".join(f"{Path(im['file_name']).stem}\n" for im in coco[s]["images"]))
        summary = {
            "source": source, "definition": definition.name,
            "categories": [c.name for c in definition.categories], "palette": [list(c.color) for c in definition.categories],
            "frames": {s: len(coco[s]["images"]) for s in SPLITS}, "objects": counts, **(extra or {}),
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
