"""KITTI object (training split) -> COCO for mmdet, reading frames in parallel; and any other registered
format -> COCO. The train/val split is reproducible and written down (see ``coco.write_coco`` for the layout).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import pickle
from pathlib import Path

from tqdm import tqdm

from admlops.components.convert.coco import write_coco
from admlops.components.convert.readers import kitti_frames, kitti_split_ids, read_kitti_frame
from admlops.components.convert.records import STRICT, Frame, Skips, check_reader_options, guarded, read_frames
from admlops.definition import DatasetDefinition, load_definition
from admlops.cpu import worker_pool
from admlops.errors import InputError
from admlops.localfs import atomic_dir
from admlops.shards import in_shard_order, shard_range


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


def _kitti_jobs(kitti_root: Path, defn: DatasetDefinition, val_fraction: float, seed: int, skips: Skips):
    """(jobs: (training dir, frame id, classes) in dataset order, the split of each frame, how it was split)."""
    training, frames = kitti_frames(kitti_root)
    split, split_info = _splits(kitti_root, frames, val_fraction, seed, skips)
    return [(training, f, tuple(defn.mapping("kitti"))) for f in frames if f in split], split, split_info


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
    jobs, split, split_info = _kitti_jobs(kitti_root, defn, val_fraction, seed, skips)
    with worker_pool(workers) as pool:
        results = tqdm(pool.imap(guarded(_read_frame), jobs, chunksize=8), total=len(jobs), desc="convert kitti->coco",
                       unit="frame")
        return write_coco(skips.passed((job[1] for job in jobs), results), out, defn, "kitti", lambda frame: split[frame.id],
                          {"kitti_root": str(kitti_root), "split": split_info}, skips)


def _relative(frame: Frame, root: Path, to_root: bool) -> Frame:
    """``frame`` with its file paths relative to ``root`` (``to_root`` False) or resolved under it again."""
    def move(p):
        return None if p is None else (root / p if to_root else Path(p).relative_to(root))

    return dataclasses.replace(frame, image=move(frame.image), source=move(frame.source), lidar=move(frame.lidar))


def _shard_jobs(kitti_root: Path, shard: int, shards: int, definition, val_fraction: float, seed: int) -> list:
    jobs, _, _ = _kitti_jobs(kitti_root, load_definition(definition), val_fraction, seed, STRICT)
    return shard_range(jobs, shard, shards)


def kitti_shard_frames(kitti_root: str | Path, shard: int, shards: int,
                       definition: str | Path | DatasetDefinition = "kitti-3class", val_fraction: float = 0.2,
                       seed: int = 0) -> set[tuple[str, str]]:
    """The frames ``kitti_convert_shard`` converts as (``training``, id): ``kitti_frame_file``'s keys."""
    return {("training", job[1]) for job in _shard_jobs(Path(kitti_root), shard, shards, definition, val_fraction, seed)}


def kitti_convert_shard(kitti_root: str | Path, out: str | Path, shard: int, shards: int,
                        definition: str | Path | DatasetDefinition = "kitti-3class", val_fraction: float = 0.2,
                        seed: int = 0, workers: int | None = None) -> dict:
    """Shard ``shard`` of ``shards`` of the conversion, strictly, at ``out`` (atomically): a contiguous range of the
    frames read (labels, image sizes, LiDAR points per box) into ``frames.pickles``, paths relative to the root;
    ``merge_convert_shards`` writes the dataset from the shards."""
    kitti_root = Path(kitti_root).resolve()
    jobs = _shard_jobs(kitti_root, shard, shards, definition, val_fraction, seed)
    with atomic_dir(out) as tmp, worker_pool(workers) as pool, open(tmp / "frames.pickles", "wb") as f:
        for frame in tqdm(pool.imap(_read_frame, jobs, chunksize=8), total=len(jobs), desc=f"convert shard {shard}",
                          unit="frame"):
            pickle.dump(_relative(frame, kitti_root, False), f, protocol=pickle.HIGHEST_PROTOCOL)
        record = {"shard": shard, "shards": shards, "frames": len(jobs)}
        (tmp / "shard.json").write_text(json.dumps(record))
    return record


def merge_convert_shards(kitti_root: str | Path, shards: list[str | Path], out: str | Path,
                         definition: str | Path | DatasetDefinition = "kitti-3class", val_fraction: float = 0.2,
                         seed: int = 0) -> dict:
    """The COCO dataset at ``out`` from ``kitti_convert_shard``'s outputs (any order): byte for byte what
    ``kitti_to_coco`` writes in one process (strictly); the summary."""
    given, kitti_root = Path(kitti_root), Path(kitti_root).resolve()
    defn = load_definition(definition)
    _, split, split_info = _kitti_jobs(kitti_root, defn, val_fraction, seed, STRICT)
    try:
        records = [json.loads((Path(d) / "shard.json").read_text()) for d in shards]
    except (OSError, ValueError) as exc:
        raise InputError(shards[0], f"not a convert shard: {exc}") from None
    ordered = in_shard_order(shards, records)

    def frames():
        for shard in ordered:
            with open(shard / "frames.pickles", "rb") as f:
                while True:
                    try:
                        yield _relative(pickle.load(f), kitti_root, True)
                    except EOFError:
                        break

    return write_coco(frames(), out, defn, "kitti", lambda frame: split[frame.id],
                      {"kitti_root": str(given), "split": split_info})


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
