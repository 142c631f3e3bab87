"""KITTI -> everything mmdet3d's KITTI configs load, as one data root:

* ``kitti_infos_{train,val,trainval,test}.pkl`` (v2: metainfo + data_list, with ``cam_instances``),
* ``training/velodyne_reduced/`` (scans cut to the camera's view, what the configs read as ``pts``),
* ``kitti_gt_database/`` + ``kitti_dbinfos_train.pkl`` (object points for ObjectSample augmentation),
* ``training/{image_2,velodyne,calib}`` linked to the source, so ``data_root`` can point here.

Field by field what mmdet3d's own ``tools/create_data.py kitti`` writes (checked against it in
tests/test_mmdet3d_infos.py), but streamed: frames are processed in parallel, each worker writes its
reduced scan and GT-database files and returns its info already pickled, and the parent appends it to
the split's spool, so peak memory does not grow with the dataset (bench/infos_bench.py measures it).

In shards (the pipelines' ParallelFor): ``write_kitti_shard`` converts a contiguous range of the frames and keeps
its spools; ``merge_kitti_shards`` links the shards' files into one data root and writes the pickles from their
spools in shard order (GT-database group ids numbered there, in dataset order). ``write_kitti_infos`` is the same
code with one shard, so any split gives the same bytes.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from admlops.components.convert.lidar import kitti_lidar, kitti_scan
from admlops.components.convert.readers import kitti_split_ids, read_kitti_frame
from admlops.components.convert.records import STRICT, Skips, guarded
from admlops.dataset_formats import kitti
from admlops.cpu import worker_pool
from admlops.errors import InputError
from admlops.geometry import hull_bounds_in_image
from admlops.localfs import atomic_dir, link_or_copy
from admlops.shards import in_shard_order, shard_range

CLASSES = ("Pedestrian", "Cyclist", "Car", "Van", "Truck", "Person_sitting", "Tram", "Misc")
METAINFO = {"categories": {**{c: i for i, c in enumerate(CLASSES)}, "DontCare": -1}, "dataset": "kitti", "info_version": "1.1"}
MIN_HEIGHT, MAX_OCCLUSION, MAX_TRUNCATION = (40, 25, 25), (0, 1, 2), (0.15, 0.3, 0.5)  # KITTI easy/moderate/hard
LINKED = ("image_2", "velodyne", "calib")


class Spool:
    """A list streamed element by element into a scratch file and embedded into a pickle by ``write_pickle``.

    Elements are protocol-2 pickles without PROTO/STOP, each followed by APPEND. Protocol 2 names memo
    slots explicitly (BINPUT n), so every element is self-contained even though all restart at slot 0.
    """

    def __init__(self, path: Path):
        self.path, self.count = path, 0
        self._file = open(path, "wb")

    @staticmethod
    def encode(obj) -> bytes:
        return pickle.dumps(obj, protocol=2)[2:-1] + b"a"

    def append_encoded(self, data: bytes) -> None:
        self._file.write(data)
        self.count += 1

    def close(self) -> None:
        self._file.close()


def write_pickle(path: Path, fields: dict) -> None:
    """Pickle the dict ``fields``; a value that is a tuple of spool files (``Spool``'s elements, concatenated in
    order) becomes one list of their elements."""
    with open(path, "wb") as f:
        f.write(b"\x80\x02}")  # PROTO 2, EMPTY_DICT
        for key, value in fields.items():
            f.write(Spool.encode(key)[:-1])
            if isinstance(value, tuple):
                f.write(b"]")  # EMPTY_LIST, then the spooled APPENDs
                for part in value:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, f)
            else:
                f.write(Spool.encode(value)[:-1])
            f.write(b"s")  # SETITEM
        f.write(b".")


class SplitSpools:
    """The parent's side of a streamed infos writer: a Spool per split and one stream of GT-database entries (class,
    entry) in dataset order, under ``spools`` (``SPOOLS`` of an output or shard directory), and the skipped samples.
    The pickles are written from one or several shards' spools by ``write_split_infos`` and ``write_dbinfos``."""

    def __init__(self, spools: Path, skips: Skips):
        spools.mkdir(parents=True, exist_ok=True)
        self.dir, self.skips, self.splits = spools, skips, {}
        self.db = open(spools / "db.stream", "wb")

    def collect(self, split: str, samples: list[str], results: Iterable, desc: str, unit: str) -> None:
        """Spool ``results`` of ``guarded`` jobs, one per name in ``samples``: each an (encoded info, GT-database
        entries) pair, or the InputError that skips the sample (``Skips.passed``)."""
        self.splits[split] = spool = Spool(self.dir / f"{split}.spool")
        for encoded, db in tqdm(self.skips.passed(samples, results), total=len(samples), desc=desc, unit=unit):
            spool.append_encoded(encoded)
            for entry in db:
                pickle.dump(entry, self.db, protocol=pickle.HIGHEST_PROTOCOL)

    def finish(self, **meta) -> dict:
        """Close the spools; write ``shard.json`` (``meta``: which shard; frames per split, the skipped samples); its
        record."""
        for spool in self.splits.values():
            spool.close()
        self.db.close()
        record = {**meta, "counts": {split: spool.count for split, spool in self.splits.items()}, "strict": self.skips.strict,
                  **self.skips.report()}
        (self.dir / "shard.json").write_text(json.dumps(record, indent=2))
        return record


SPOOLS = ".spools"  # the spools of an infos output or shard, removed once the pickles are written


def write_dbinfos(path: Path, streams: list[Path]) -> None:
    """The GT-database pickle from the shards' entry streams, in order: ``group_id`` counts the objects in dataset
    order (as the reference's do), so any split into shards gives the same bytes."""
    spools: dict[str, Spool] = {}
    group = 0
    for stream in streams:
        with open(stream, "rb") as f:
            while True:
                try:
                    name, entry = pickle.load(f)
                except EOFError:
                    break
                if name not in spools:
                    spools[name] = Spool(path.parent / f".db-{name}.spool")
                spools[name].append_encoded(Spool.encode({**entry, "group_id": group}))
                group += 1
    for spool in spools.values():
        spool.close()
    write_pickle(path, {name: (spool.path,) for name, spool in spools.items()})
    for spool in spools.values():
        spool.path.unlink()


def shard_records(shards: list[Path]) -> list[dict]:
    try:
        return [json.loads((d / SPOOLS / "shard.json").read_text()) for d in shards]
    except (OSError, ValueError) as exc:
        raise InputError(shards[0], f"not an infos shard: {exc}") from None


def write_skipped(out: Path, records: list[dict]) -> None:
    """One ``skipped.json`` for the shards' skipped samples (written unless every shard was strict)."""
    samples = [s for r in records for s in r["samples"]]
    if not all(r["strict"] for r in records):
        (out / "skipped.json").write_text(json.dumps({"skipped": len(samples), "samples": samples}, indent=2))


def difficulty(height: float, occluded: int, truncated: float) -> int:
    """KITTI's difficulty: 0 easy, 1 moderate, 2 hard, -1 none of them (devkit eval rules)."""
    for level in range(3):
        if occluded <= MAX_OCCLUSION[level] and height > MIN_HEIGHT[level] and truncated <= MAX_TRUNCATION[level]:
            return level
    return -1


def _f32(values) -> list[float]:
    return np.asarray(values, dtype=np.float32).ravel().tolist()


def camera_instance(obj, P2: np.ndarray, width: int, height: int) -> dict | None:
    """The monocular (``cam_instances``) record of one labelled object: the 2D box is the projected 3D box
    cut to the image (as mmdet3d's get_kitti_style_2d_boxes does), or None when nothing of it is in view."""
    h, w, l = obj.box3d["dimensions"]
    loc, dims = obj.box3d["location"], (l, h, w)
    centre = np.add(loc, (0.0, -h / 2, 0.0))
    corners = kitti.box3d_corners((h, w, l), loc, obj.box3d["rotation_y"])
    corners = corners[corners[:, 2] > 0]
    if not len(corners):
        return None
    bounds = hull_bounds_in_image(kitti.project(P2[:3], corners), width, height)
    if bounds is None:
        return None
    proj = P2 @ np.append(centre, 1.0)
    if proj[2] <= 0:
        return None
    label = CLASSES.index(obj.label)
    return {"bbox_label": label, "bbox_label_3d": label, "bbox": list(bounds), "bbox_3d_isvalid": True,
            "bbox_3d": _f32([*loc, *dims, obj.box3d["rotation_y"]]), "velocity": -1,
            "center_2d": (proj[:2] / proj[2]).tolist(), "depth": float(proj[2])}


def frame_info(args) -> tuple[bytes, list[tuple[str, dict]]]:
    """One frame: its info (pickled, ready for a Spool) and, for GT-database frames, the database entries.
    Writes the frame's reduced scan and object point files under ``out`` once its inputs have been read."""
    base, frame_id, out, prefix, split = args
    labelled, with_db = split != "test", split == "train"
    frame = read_kitti_frame(base, frame_id, labels=labelled, count_points=False)  # counted below, with the reduced scan
    if frame.calib is None:
        raise InputError(base / "calib" / f"{frame_id}.txt", "missing calibration file")
    if frame.lidar is None:
        raise InputError(base / "velodyne" / f"{frame_id}.bin", "missing Velodyne scan")
    calib = {k: kitti.to_homogeneous(v) for k, v in frame.calib.items()}
    lidar2cam = calib["R0_rect"].astype(np.float32) @ calib["Tr_velo_to_cam"].astype(np.float32)
    images = {f"CAM{i}": {"cam2img": calib[f"P{i}"].tolist(), "lidar2img": (calib[f"P{i}"] @ lidar2cam).tolist()} for i in range(4)}
    images["CAM2"].update(img_path=frame.image.name, height=frame.height, width=frame.width, lidar2cam=lidar2cam.tolist())
    images["R0_rect"] = calib["R0_rect"].astype(np.float32).tolist()

    reduced, boxes_lidar, inside = kitti_lidar(kitti_scan(frame.lidar), frame.calib, frame.width, frame.height,
                                               [o for o in frame.objects if o.box3d is not None])
    counts = inside.sum(0)
    reduced.tofile(out / base.name / "velodyne_reduced" / frame.lidar.name)

    instances, cam_instances, db, index = [], [], [], 0
    for group_id, obj in enumerate(frame.objects):
        if obj.box3d is None:  # DontCare: KITTI writes -1 / -1000 / -10 placeholders
            loc, dims_lhw, ry, trunc, occ, alpha = (-1000.0,) * 3, (-1.0,) * 3, -10.0, -1.0, -1, -10.0
        else:
            h, w, l = obj.box3d["dimensions"]
            loc, dims_lhw, ry = obj.box3d["location"], (l, h, w), obj.box3d["rotation_y"]
            trunc, occ, alpha = obj.attributes["truncated"], obj.attributes["occluded"], obj.attributes["alpha"]
        center = np.array(loc) + np.array(dims_lhw) * np.array([0.0, -0.5, 0.0])  # bottom centre -> gravity centre
        proj = np.append(center, 1.0) @ calib["P2"].T
        label = CLASSES.index(obj.label) if obj.label in CLASSES else -1
        diff = difficulty(obj.bbox[3] - obj.bbox[1], occ, trunc)
        instances.append({
            "bbox": list(obj.bbox), "bbox_label": label, "bbox_3d": [*loc, *dims_lhw, ry], "bbox_label_3d": label,
            "depth": float(proj[2]), "center_2d": [float(proj[0] / proj[2]), float(proj[1] / proj[2])],
            "num_lidar_pts": int(counts[index]) if obj.box3d else -1,
            "difficulty": diff, "truncated": trunc, "occluded": occ,
            "alpha": alpha, "score": 0.0, "index": index if obj.box3d else -1, "group_id": group_id,
        })
        if obj.box3d is None:
            continue
        if label >= 0 and (cam := camera_instance(obj, calib["P2"], frame.width, frame.height)) is not None:
            cam_instances.append(cam)
        if with_db:
            db.append((obj.label, _db_object(reduced[inside[:, index]], boxes_lidar[index], int(frame_id), obj.label, index, diff,
                                             out, prefix)))
        index += 1
    info = {
        "sample_idx": int(frame_id), "images": images, "instances": instances,
        "lidar_points": {"num_pts_feats": 4, "lidar_path": frame.lidar.name,
                         "Tr_velo_to_cam": calib["Tr_velo_to_cam"].astype(np.float32).tolist(),
                         "Tr_imu_to_velo": calib["Tr_imu_to_velo"].astype(np.float32).tolist()},
    }
    if labelled:
        info["cam_instances"] = {"CAM2": cam_instances}
    return Spool.encode(info), db


_frame_info = guarded(frame_info)


def _db_object(obj_points, box_lidar, sample_idx: int, name: str, gt_idx: int, diff: int, out: Path, prefix: str) -> dict:
    """Write one object's points (relative to its box's bottom centre) to the GT database; its dbinfo entry."""
    box32 = box_lidar.astype(np.float32)
    obj_points[:, :3] -= box32[:3]
    rel = f"{prefix}_gt_database/{sample_idx}_{name}_{gt_idx}.bin"
    obj_points.tofile(out / rel)
    return {"name": name, "path": rel, "image_idx": sample_idx, "gt_idx": gt_idx, "box3d_lidar": box32,
            "num_points_in_gt": len(obj_points), "difficulty": diff, "score": 0.0}


def _read_split(root: Path, name: str, required: bool, skips: Skips) -> list[str] | None:
    """The frame ids of ``ImageSets/<name>.txt`` (None when it is missing and not ``required``). An id that is not
    a number (mmdet3d's ``sample_idx`` is the id as an integer), or whose label (``test``: image) is missing, is a bad
    sample named with the split file and line, as convert names it (readers.kitti_split_ids)."""
    path = root / "ImageSets" / f"{name}.txt"
    if not path.is_file():
        if required:
            raise InputError(path, "missing split file (mmdet3d infos follow KITTI's ImageSets)")
        return None
    # a labelled frame is one with a label file (as convert reads them); an unlabelled test frame, one with an image
    base, folder, suffix, what = ("testing", "image_2", ".png", "image") if name == "test" else \
        ("training", "label_2", ".txt", "label")
    present = {p.name[:-len(suffix)] for p in (root / base / folder).glob(f"*{suffix}")}
    return kitti_split_ids(path, present, skips, f"has no {what} in {base}/{folder}",
                           sample=lambda frame: f"{base}/{frame}", check=_not_a_sample_idx)


def _not_a_sample_idx(frame: str) -> str | None:
    if not (frame.isascii() and frame.isdigit()):
        return f"frame id {frame!r} is not a number (mmdet3d's sample_idx is the frame id as an integer)"
    return None


def kitti_splits(root: Path, skips: Skips = STRICT) -> dict[str, list[str]]:
    """The frame ids per split: ``ImageSets/{train,val}.txt`` (and ``test.txt`` over ``testing/`` when both
    exist)."""
    splits = {name: _read_split(root, name, True, skips) for name in ("train", "val")}
    if (root / "testing").is_dir() and (test := _read_split(root, "test", False, skips)) is not None:
        splits["test"] = test
    return splits


def shard_of(splits: dict[str, list[str]], shard: int, shards: int) -> dict[str, list[str]]:
    """Shard ``shard`` of ``shards`` of the frames per split (``shards.shard_range`` over them in dataset order:
    train, val, test)."""
    part: dict[str, list[str]] = {split: [] for split in splits}
    for split, frame in shard_range([(split, frame) for split, ids in splits.items() for frame in ids], shard, shards):
        part[split].append(frame)
    return part


def shard_frames(root: Path, shard: int, shards: int) -> set[tuple[str, str]]:
    """The frames of shard ``shard`` of ``shards`` as (``training`` / ``testing``, id), ``kitti_frame_file``'s keys."""
    part = shard_of(kitti_splits(root), shard, shards)
    return {("testing" if split == "test" else "training", frame) for split, ids in part.items() for frame in ids}


def _write_frames(root: Path, out: Path, part: dict[str, list[str]], prefix: str, workers: int | None,
                  skips: Skips, shard: int = 0, shards: int = 1) -> dict:
    """The frames of ``part`` converted under ``out``: reduced scans and GT-database files at their places in the
    data root, infos and database entries spooled under ``out/SPOOLS``; the shard record."""
    (out / f"{prefix}_gt_database").mkdir(exist_ok=True)
    spools = SplitSpools(out / SPOOLS, skips)
    with worker_pool(workers) as pool:
        for split, ids in part.items():
            base = root / ("testing" if split == "test" else "training")
            (out / base.name / "velodyne_reduced").mkdir(parents=True, exist_ok=True)
            results = pool.imap(_frame_info, [(base, i, out, prefix, split) for i in ids], chunksize=8)
            spools.collect(split, [f"{base.name}/{i}" for i in ids], results, f"mmdet3d kitti infos ({split})", "frame")
    return spools.finish(shard=shard, shards=shards)


def _assemble(root: Path, out: Path, shards: list[Path], prefix: str) -> dict:
    """The data root's pickles at ``out`` from the shards' spools (in shard order), the source's folders linked in;
    the spools removed; returns frames per info file."""
    records = shard_records(shards)
    splits = list(records[0]["counts"])
    for base in {"testing" if split == "test" else "training" for split in splits}:
        for sub in LINKED:
            if (root / base / sub).is_dir() and not (out / base / sub).exists():
                (out / base).mkdir(exist_ok=True)
                os.symlink(root / base / sub, out / base / sub)
    infos = {split: tuple(d / SPOOLS / f"{split}.spool" for d in shards) for split in splits}
    infos["trainval"] = infos["train"] + infos["val"]
    for name, parts in infos.items():  # unlabelled test frames have no DontCare regions to declare
        meta = METAINFO if name != "test" else {**METAINFO, "categories": {c: i for i, c in enumerate(CLASSES)}}
        write_pickle(out / f"{prefix}_infos_{name}.pkl", {"metainfo": meta, "data_list": parts})
    write_dbinfos(out / f"{prefix}_dbinfos_train.pkl", [d / SPOOLS / "db.stream" for d in shards])
    write_skipped(out, records)
    counts = {split: sum(r["counts"][split] for r in records) for split in splits}
    for d in shards:
        shutil.rmtree(d / SPOOLS, ignore_errors=True)
    return {**counts, "trainval": counts["train"] + counts["val"]}


def write_kitti_infos(kitti_root: str | Path, out: str | Path, prefix: str = "kitti", workers: int | None = None,
                      skips: Skips = STRICT) -> dict:
    """Write the mmdet3d data root for ``kitti_root`` under ``out`` (atomically); returns frames per info file.

    Splits follow ``ImageSets/{train,val}.txt`` (and ``test.txt`` over ``testing/`` when both exist). A bad
    frame raises, or with non-strict ``skips`` is left out and listed in ``skipped.json``. The same as the
    shards of ``write_kitti_shard`` merged by ``merge_kitti_shards``, in one process."""
    root = Path(kitti_root).resolve()
    splits = kitti_splits(root, skips)
    with atomic_dir(out) as tmp:
        _write_frames(root, tmp, splits, prefix, workers, skips)
        return _assemble(root, tmp, [tmp], prefix)


def write_kitti_shard(kitti_root: str | Path, out: str | Path, shard: int, shards: int, prefix: str = "kitti",
                      workers: int | None = None) -> dict:
    """Shard ``shard`` of ``shards`` (``shard_of``) of the data root, strictly, at ``out`` (atomically): its
    frames' reduced scans and GT-database files, and its spools; the shard record."""
    root = Path(kitti_root).resolve()
    part = shard_of(kitti_splits(root), shard, shards)
    with atomic_dir(out) as tmp:
        return _write_frames(root, tmp, part, prefix, workers, STRICT, shard, shards)


def gather_shards(shards: list[str | Path], out: Path) -> list[Path]:
    """The shards' data files hard-linked (or copied) to their places under ``out``, their spools linked under
    ``out/SPOOLS/<k>`` in shard order (checked: shards 0..n-1 of n); returns those spool parents, which
    ``_assemble``-style writers read and remove while the shard outputs stay intact."""
    shards = [Path(d) for d in shards]
    spools = []
    for k, d in enumerate(in_shard_order(shards, shard_records(shards))):
        for parent, dirs, files in os.walk(d):  # strings, not Paths: a data root holds files by the ten thousand
            rel = os.path.relpath(parent, d)
            if rel == ".":
                dirs.remove(SPOOLS)
            dest = os.path.join(out, rel)
            os.makedirs(dest, exist_ok=True)
            for name in files:
                link_or_copy(os.path.join(parent, name), os.path.join(dest, name))
        shutil.copytree(d / SPOOLS, out / SPOOLS / str(k) / SPOOLS, copy_function=link_or_copy)
        spools.append(out / SPOOLS / str(k))
    return spools


def merge_kitti_shards(kitti_root: str | Path, shards: list[str | Path], out: str | Path, prefix: str = "kitti") -> dict:
    """The data root at ``out`` (atomically) from ``write_kitti_shard``'s outputs, in shard order: byte for byte
    what ``write_kitti_infos`` writes in one process. The shards are left as they were (their files are linked)."""
    with atomic_dir(out) as tmp:
        counts = _assemble(Path(kitti_root).resolve(), tmp, gather_shards(shards, tmp), prefix)
        shutil.rmtree(tmp / SPOOLS)
        return counts
