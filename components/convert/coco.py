"""COCO detection writer: ``Frame`` records -> the COCO dataset layout that mmdet and evaluate read.

Output layout (the ``Dataset`` artifact)::

    images/<file>               hard links (or copies) of the source images
    annotations/train.json      COCO: images, annotations (bbox xywh, iscrowd), categories
    annotations/val.json
    splits/train.txt, val.txt   frame ids, one per line
    summary.json                counts per split and class, categories, palette, source, extra records
    index.parquet               one row per object (frame, sensor, split, class, 2D and 3D geometry), for
                                pyarrow / DuckDB queries

Classes mapped to ``ignore`` by the dataset definition (DontCare, Van, ...) and crowd boxes become
``iscrowd=1`` annotations, one per category, so mmdet skips them in training and COCO evaluation counts
detections inside them as neither true nor false positives.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

from admlops.components.convert.records import STRICT, Frame, Skips
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
    skips: Skips = STRICT,
) -> dict:
    """Write ``frames`` (classes mapped by ``definition.mapping(source)``) under ``out``, atomically.
    A frame with an unmapped class or a box outside its image is an error, or skipped and listed in
    ``skipped.json`` with the reader's own skips when ``skips`` is not strict."""
    mapping = definition.mapping(source)
    cat_ids = {c.name: c.id for c in definition.categories}
    categories = [{"id": c.id, "name": c.name} for c in definition.categories]
    coco = {s: {"images": [], "annotations": [], "categories": categories} for s in SPLITS}
    counts = {s: {c.name: 0 for c in definition.categories} | {IGNORE: 0} for s in SPLITS}
    names: dict[str, Path] = {}
    index: list[dict] = []
    with atomic_dir(out) as tmp:
        for sub in ("images", "annotations", "splits"):
            (tmp / sub).mkdir()
        for frame in frames:
            with skips.sample(frame.id):
                _add_frame(frame, split_of(frame), coco, counts, index, names, tmp, definition, mapping, cat_ids)
        for s in SPLITS:
            (tmp / "annotations" / f"{s}.json").write_text(json.dumps(coco[s]))
            (tmp / "splits" / f"{s}.txt").write_text("".join(f"{Path(im['file_name']).stem}\n" for im in coco[s]["images"]))
        summary = {
            "source": source, "definition": definition.name,
            "categories": [c.name for c in definition.categories], "palette": [list(c.color) for c in definition.categories],
            "frames": {s: len(coco[s]["images"]) for s in SPLITS}, "objects": counts, **(extra or {}),
        }
        if not skips.strict:
            summary["skipped"] = len(skips.items)
            skips.write(tmp)
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        write_index(index, tmp / "index.parquet")
    return summary


def _add_frame(frame: Frame, s: str, coco, counts, index, names, tmp: Path, definition, mapping, cat_ids) -> None:
    """Check every object of ``frame`` first, then add the frame, its image and its annotations."""
    rows = []
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
        rows.append((obj, target, [left, top, right - left, bottom - top]))
    file_name = f"images/{frame.id}{frame.image.suffix}"
    if names.setdefault(file_name, frame.image) != frame.image:
        raise InputError(frame.source, f"two frames have the id {frame.id!r} ({names[file_name]}, {frame.image})")
    link_or_copy(frame.image, tmp / file_name)
    image_id = sum(len(c["images"]) for c in coco.values()) + 1
    coco[s]["images"].append({"id": image_id, "file_name": file_name, "width": frame.width, "height": frame.height})
    anns = coco[s]["annotations"]
    for obj, target, box in rows:
        counts[s][target] += 1
        index.append(_index_row(frame, obj, s, target, box))
        targets = definition.categories if target == IGNORE else [c for c in definition.categories if c.name == target]
        for cat in targets:
            anns.append({
                "id": len(anns) + 1, "image_id": image_id, "category_id": cat_ids[cat.name], "bbox": box,
                "area": box[2] * box[3], "iscrowd": int(target == IGNORE),
                "source": {"label": obj.label, **obj.attributes},
            })


INDEX_COLUMNS = {
    "frame": "string", "sensor": "string", "split": "string", "image": "string", "image_width": "int32",
    "image_height": "int32", "category": "string", "source_label": "string", "ignore": "bool",
    "x1": "float64", "y1": "float64", "x2": "float64", "y2": "float64", "width": "float64", "height": "float64",
    "truncated": "float64", "occluded": "float64", "dim_h": "float64", "dim_w": "float64", "dim_l": "float64",
    "loc_x": "float64", "loc_y": "float64", "loc_z": "float64", "rotation_y": "float64", "distance": "float64",
    "num_lidar_pts": "int32",
}


def _index_row(frame: Frame, obj, split: str, target: str, box: list[float]) -> dict:
    b3 = obj.box3d or {}
    dims, loc = b3.get("dimensions", (None,) * 3), b3.get("location", (None,) * 3)
    occluded = obj.attributes.get("occluded")
    return {
        "frame": frame.id, "sensor": "camera", "split": split, "image": f"images/{frame.id}{frame.image.suffix}",
        "image_width": frame.width, "image_height": frame.height, "category": target,
        "source_label": obj.attributes.get("source_label", obj.label),
        "ignore": target == IGNORE, "x1": box[0], "y1": box[1], "x2": box[0] + box[2], "y2": box[1] + box[3],
        "width": box[2], "height": box[3], "truncated": _float(obj.attributes.get("truncated")),
        "occluded": _float(occluded), "dim_h": dims[0], "dim_w": dims[1], "dim_l": dims[2],
        "loc_x": loc[0], "loc_y": loc[1], "loc_z": loc[2], "rotation_y": b3.get("rotation_y"),
        "distance": (loc[0] ** 2 + loc[2] ** 2) ** 0.5 if loc[0] is not None else None,
        "num_lidar_pts": obj.attributes.get("num_lidar_pts"),
    }


def _float(value) -> float | None:
    return None if value is None else float(value)


def write_index(rows: list[dict], path: Path) -> None:
    """The annotation index as Parquet (typed, nullable columns; an empty dataset gives an empty table)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.type_for_alias(kind)) for name, kind in INDEX_COLUMNS.items()])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
