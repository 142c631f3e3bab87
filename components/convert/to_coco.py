"""KITTI object (training split) -> COCO for mmdet, reading frames in parallel; and any other registered
format -> COCO. The train/val split is reproducible and written down (see ``coco.write_coco`` for the layout).
"""
from __future__ import annotations

import hashlib
from multiprocessing import Pool
from pathlib import Path

from tqdm import tqdm

from admlops.components.convert.coco import write_coco
from admlops.components.convert.readers import kitti_frames, kitti_split_ids, read_kitti_frame
from admlops.components.convert.records import STRICT, Frame, Skips, check_reader_options, guarded, read_frames
from admlops.definition import DatasetDefinition, load_definition


def hash_split(frame: str, val_fraction: float, seed: int) -> str:
    """'val' or 'train' from a hash of (seed, frame id): stable as frames are added or removed."""
    digest = hashlib.sha256(f"{seed}:{frame}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2**64 < val_fraction else "train"


def _read_frame(args: tuple[Path, str, tuple[str, ...]]) -> Frame:
    training, frame, classes = args
    return read_kitti_frame(training, frame, classes)  # a class the definition does not map is an error


def _splits(kitti_root: Path, frames: list[str], val_fraction: float, seed: int, skips: Skips) -> tuple[dict[str, str], dict]:
    sets = kitti_root / "ImageSets"
    if (sets / "train.txt").is_file() and (sets / "val.txt").is_file():
        known = set(frames)
        split = {}
        for name in ("train", "val"):
            for frame in kitti_split_ids(sets / f"{name}.txt", known, skips):
                split[frame] = name
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
    skips: Skips = STRICT,
) -> dict:
    """Convert ``kitti_root/training`` to COCO under ``out`` (published atomically); returns the summary.

    The split comes from ``ImageSets/{train,val}.txt`` when both exist (the usual KITTI practice),
    else from a seeded hash of each frame id. Raises InputError naming the file and line of bad input.
    """
    kitti_root = Path(kitti_root)
    defn = load_definition(definition)
    mapping = defn.mapping("kitti")
    training, frames = kitti_frames(kitti_root)
    split, split_info = _splits(kitti_root, frames, val_fraction, seed, skips)
    jobs = [(training, f, tuple(mapping)) for f in frames if f in split]
    with Pool(workers) as pool:
        results = tqdm(pool.imap(guarded(_read_frame), jobs, chunksize=8), total=len(jobs), desc="convert kitti->coco",
                       unit="frame")
        return write_coco(skips.passed((job[1] for job in jobs), results), out, defn, "kitti", lambda frame: split[frame.id],
                          {"kitti_root": str(kitti_root), "split": split_info}, skips)


def convert_to_coco(
    fmt: str,
    src: str | Path,
    out: str | Path,
    definition: str | Path | DatasetDefinition = "kitti-3class",
    val_fraction: float = 0.2,
    seed: int = 0,
    skips: Skips = STRICT,
    **reader_args,
) -> dict:
    """Convert a dataset in format ``fmt`` (a key of ``READERS``) to COCO; KITTI takes the parallel path.

    Other formats are split by a seeded hash of each frame id (of its group, e.g. its nuScenes scene). ``reader_args`` go to the reader
    (e.g. ``image_root`` for COCO, VOC and BDD100K, ``split`` for YOLO); one it does not take is a UsageError.
    """
    check_reader_options(fmt, reader_args)
    if fmt == "kitti":
        return kitti_to_coco(src, out, definition, val_fraction, seed, skips=skips)
    defn = load_definition(definition)
    frames = tqdm(read_frames(fmt, src, skips, **reader_args), desc=f"convert {fmt}->coco", unit="frame")
    return write_coco(frames, out, defn, fmt, lambda frame: hash_split(frame.group or frame.id, val_fraction, seed),
                      {"input": str(src), "split": {"method": "sha256", "val_fraction": val_fraction, "seed": seed}}, skips)
