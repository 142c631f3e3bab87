"""KITTI object (training split) -> COCO detection json for mmdet, with a reproducible train/val split.

Output layout (the ``Dataset`` artifact that train and evaluate read)::

    images/<frame>.png          hard links (or copies) of image_2
    annotations/train.json      COCO: images, annotations (bbox xywh, iscrowd), categories
    annotations/val.json
    splits/train.txt, val.txt   frame ids, one per line
    summary.json                counts per split and class, the split method, the definition used

Classes mapped to ``ignore`` in the dataset definition (DontCare, Van, ...) become ``iscrowd=1``
annotations, one per category, so mmdet skips them in training and COCO evaluation counts detections
inside them as neither true nor false positives.
"""
from __future__ import annotations

import hashlib
import json
from multiprocessing import Pool
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from admlops.definition import IGNORE, DatasetDefinition, load_definition
from admlops.errors import InputError
from admlops.formats import kitti
from admlops.localfs import atomic_dir, link_or_copy


def hash_split(frame: str, val_fraction: float, seed: int) -> str:
    """'val' or 'train' from a hash of (seed, frame id): stable as frames are added or removed."""
    digest = hashlib.sha256(f"{seed}:{frame}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def _read_frame(args):
    root, frame, classes = args
    label = root / "label_2" / f"{frame}.txt"
    image = root / "image_2" / f"{frame}.png"
    if not image.is_file():
        raise InputError(label, f"label without image: expected {image}")
    objects = kitti.read_label(label, classes)  # a class the definition does not map is an error
    try:
        with Image.open(image) as im:
            im.load()
            width, height = im.size
    except Exception as exc:  # PIL raises many types for corrupt files
        raise InputError(image, f"unreadable image: {exc}") from None
    return frame, width, height, objects


def _splits(kitti_root: Path, frames: list[str], val_fraction: float, seed: int) -> tuple[dict[str, str], dict]:
    sets = kitti_root / "ImageSets"
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        known = set(frames)
        split = {}
        for name in ("train", "val"):
            path = sets / f"{name}.txt"
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if line.strip():
                    if line.strip() not in known:
                        raise InputError(path, f"frame {line.strip()!r} has no label in training/label_2", n)
                    split[line.strip()] = name
        return split, {"method": "ImageSets", "files": ["ImageSets/train.txt", "ImageSets/val.txt"]}
    split = {f: hash_split(f, val_fraction, seed) for f in frames}
    return split, {"method": "sha256", "val_fraction": val_fraction, "seed": seed}


def kitti_to_coco(
    kitti_root: str | Path,
    out: str | Path,
    definition: str | Path | DatasetDefinition = "kitti-3class",
    val_fraction: float = 0.2,
    seed: int = 0,
    workers: int | None = None,
) -> dict:
    """Convert ``kitti_root/training`` to COCO under ``out`` (published atomically); returns the summary.

    The split comes from ``ImageSets/{train,val}.txt`` when both exist (the usual KITTI practice),
    else from a seeded hash of each frame id. Raises InputError naming the file and line of bad input.
    """
    kitti_root = Path(kitti_root)
    defn = definition if isinstance(definition, DatasetDefinition) else load_definition(definition)
    mapping = defn.mapping("kitti")
    training = kitti_root / "training"
    for sub in ("label_2", "image_2"):
        if not (training / sub).is_dir():
            raise InputError(training / sub, "not a KITTI object dataset: directory missing")
    frames = sorted(p.stem for p in (training / "label_2").glob("*.txt"))
    if not frames:
        raise InputError(training / "label_2", "no label files (*.txt)")
    split, split_info = _splits(kitti_root, frames, val_fraction, seed)
    cat_ids = {c.name: c.id for c in defn.categories}
    coco = {s: {"images": [], "annotations": [], "categories": [{"id": c.id, "name": c.name} for c in defn.categories]} for s in ("train", "val")}
    counts = {s: {c.name: 0 for c in defn.categories} | {IGNORE: 0} for s in ("train", "val")}
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "annotations").mkdir()
        (tmp / "splits").mkdir()
        jobs = [(training, f, tuple(mapping)) for f in frames if f in split]
        with Pool(workers) as pool:
            results = pool.imap(_read_frame, jobs, chunksize=8)
            for image_id, (frame, width, height, objects) in enumerate(
                tqdm(results, total=len(jobs), desc="convert kitti->coco", unit="frame"), start=1
            ):
                label_path = training / "label_2" / f"{frame}.txt"
                s = split[frame]
                link_or_copy(training / "image_2" / f"{frame}.png", tmp / "images" / f"{frame}.png")
                coco[s]["images"].append({"id": image_id, "file_name": f"images/{frame}.png", "width": width, "height": height})
                anns = coco[s]["annotations"]
                for obj in objects:
                    target = mapping[obj.type]
                    left, top = max(obj.bbox[0], 0.0), max(obj.bbox[1], 0.0)
                    right, bottom = min(obj.bbox[2], width), min(obj.bbox[3], height)
                    if right <= left or bottom <= top:
                        raise InputError(label_path, f"a {obj.type} 2D box {obj.bbox} lies outside the {width}x{height} image")
                    box = [left, top, right - left, bottom - top]
                    counts[s][target] += 1
                    for cat in (defn.categories if target == IGNORE else [c for c in defn.categories if c.name == target]):
                        anns.append({
                            "id": len(anns) + 1, "image_id": image_id, "category_id": cat_ids[cat.name], "bbox": box,
                            "area": box[2] * box[3], "iscrowd": int(target == IGNORE),
                            "kitti": {"type": obj.type, "truncated": obj.truncated, "occluded": obj.occluded},
                        })
        for s in ("train", "val"):
            (tmp / "annotations" / f"{s}.json").write_text(json.dumps(coco[s]))
            (tmp / "splits" / f"{s}.txt").write_text("".join(f"{Path(im['file_name']).stem}\n" for im in coco[s]["images"]))
        summary = {
            "source": "kitti", "kitti_root": str(kitti_root), "definition": defn.name,
            "categories": [c.name for c in defn.categories], "palette": [list(c.color) for c in defn.categories],
            "frames": {s: len(coco[s]["images"]) for s in coco}, "objects": counts, "split": split_info,
        }
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
