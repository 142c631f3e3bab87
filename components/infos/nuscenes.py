"""nuScenes -> what mmdet3d's nuScenes configs load, as one data root:

* ``nuscenes_infos_{train,val}.pkl`` (``test`` for v1.0-test): v2 infos with LiDAR sweeps, the six cameras
  and their ``cam_instances``, in sample-table order, split by the official scene lists,
* ``nuscenes_gt_database/`` + ``nuscenes_dbinfos_train.pkl``: points of every valid training box, from the
  keyframe plus its sweeps as mmdet3d's LoadPointsFromMultiSweeps accumulates them,
* ``samples/``, ``sweeps/`` and the version's tables linked to the source.

Field by field what mmdet3d's ``tools/create_data.py nuscenes`` writes (tests/test_nuscenes_infos.py), with
the KITTI writer's streaming (parallel workers, spooled pickles) and errors naming the table and token.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from nuscenes.utils import splits as official_splits

from admlops.components.convert.lidar import points_in_boxes
from admlops.components.convert.records import STRICT, Skips, guarded
from admlops.components.infos.kitti import (
    SPOOLS, Spool, SplitSpools, gather_shards, shard_of, shard_records, write_dbinfos, write_pickle, write_skipped,
)
from admlops.cpu import worker_pool
from admlops.dataset_formats import nuscenes as nus
from admlops.errors import InputError
from admlops.localfs import atomic_dir

CLASSES = ("car", "truck", "trailer", "bus", "construction_vehicle", "bicycle", "motorcycle", "pedestrian",
           "traffic_cone", "barrier")
NAME_MAPPING = {  # nuScenes category -> mmdet3d's detection class
    "movable_object.barrier": "barrier", "vehicle.bicycle": "bicycle", "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus", "vehicle.car": "car", "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle", "human.pedestrian.adult": "pedestrian", "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian", "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone", "vehicle.trailer": "trailer", "vehicle.truck": "truck",
}
ATTRIBUTES = ("cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing",
              "pedestrian.sitting_lying_down", "vehicle.moving", "vehicle.parked", "vehicle.stopped", "None")
SWEEPS_FOR_DB, CLOSE_RADIUS = 10, 1.0  # mmdet3d's GT-database point loading (LoadPointsFromMultiSweeps)
_TABLES: nus.Tables | None = None  # set before the pool forks; workers share it copy-on-write


def scene_splits(version: str) -> dict[str, list[str]]:
    """Official scene names per split of a nuScenes version."""
    if version == "v1.0-mini":
        return {"train": official_splits.mini_train, "val": official_splits.mini_val}
    if version == "v1.0-test":
        return {"test": official_splits.test}
    return {"train": official_splits.train, "val": official_splits.val}


def _f32(m) -> list:
    return np.asarray(m, dtype=np.float32).tolist()


def _cam_instance(obj: dict) -> dict | None:
    if obj["category"] not in NAME_MAPPING:
        return None
    label = CLASSES.index(NAME_MAPPING[obj["category"]])
    return {"bbox_label": label, "bbox_label_3d": label, "bbox": obj["bbox"], "bbox_3d_isvalid": True,
            "bbox_3d": [*obj["centre"].tolist(), *obj["lhw"].tolist(), obj["yaw"]], "velocity": obj["velocity"].tolist(),
            "center_2d": obj["center_2d"], "depth": obj["depth"], "attr_label": ATTRIBUTES.index(obj["attribute"])}


def _sensor_entry(tables: nus.Tables, sd: dict, global_to_lidar: np.ndarray) -> tuple[dict, np.ndarray]:
    cs, pose = tables.pose(sd)
    sensor2ego, ego2global = nus.transform(cs["rotation"], cs["translation"]), nus.transform(pose["rotation"], pose["translation"])
    lidar2sensor = np.linalg.inv(global_to_lidar @ ego2global @ sensor2ego)
    return {"sensor2ego": _f32(sensor2ego), "ego2global": _f32(ego2global), "lidar2sensor": _f32(lidar2sensor)}, lidar2sensor


def sample_info(args) -> tuple[bytes, list[tuple[str, dict]]]:
    sample_token, index, split, out, prefix, max_sweeps = args
    tables = _TABLES
    tables.check(sample_token)
    sample = tables.index["sample"][sample_token]
    sds = tables.sample_data[sample_token]
    for channel in ("LIDAR_TOP", *nus.CAMERAS):
        if channel not in sds:
            raise InputError(tables.dir / "sample_data.json", f"sample {sample_token!r} has no {channel} keyframe")
    lidar_sd = sds["LIDAR_TOP"]
    cs, pose = tables.pose(lidar_sd)
    lidar2ego, ego2global = nus.transform(cs["rotation"], cs["translation"]), nus.transform(pose["rotation"], pose["translation"])
    global_to_lidar = np.linalg.inv(ego2global @ lidar2ego)
    tables.path(lidar_sd)
    info = {"sample_idx": index, "token": sample_token, "timestamp": sample["timestamp"] / 1e6, "ego2global": _f32(ego2global),
            "lidar_points": {"num_pts_feats": 5, "lidar_path": Path(lidar_sd["filename"]).name, "lidar2ego": _f32(lidar2ego)}}
    sweeps, sd = [], lidar_sd
    while len(sweeps) < max_sweeps and sd["prev"]:
        sd = tables.follow("sample_data", sd, "prev", "sample_data")
        entry, _ = _sensor_entry(tables, sd, global_to_lidar)
        tables.path(sd)
        sweeps.append({"timestamp": sd["timestamp"] / 1e6, "ego2global": entry["ego2global"], "sample_data_token": sd["token"],
                       "lidar_points": {"num_pts_feats": 5, "lidar2ego": entry["sensor2ego"], "lidar2sensor": entry["lidar2sensor"],
                                        "lidar_path": sd["filename"]}})
    if sweeps:
        info["lidar_sweeps"] = sweeps
    info["images"] = {}
    for cam in nus.CAMERAS:
        sd = sds[cam]
        entry, _ = _sensor_entry(tables, sd, global_to_lidar)
        tables.path(sd)
        info["images"][cam] = {"img_path": Path(sd["filename"]).name, "cam2img": tables.pose(sd)[0]["camera_intrinsic"],
                               "sample_data_token": sd["token"], "timestamp": sd["timestamp"] / 1e6,
                               "cam2ego": entry["sensor2ego"], "lidar2cam": entry["lidar2sensor"]}
    db = []
    if split != "test":
        to_lidar = np.linalg.inv(ego2global[:3, :3] @ lidar2ego[:3, :3])
        instances = []
        for ann in tables.anns[sample_token]:
            centre, wlh, q = nus.box_in_sensor(ann, cs, pose)
            name = NAME_MAPPING.get(tables.category(ann), tables.category(ann))
            label = CLASSES.index(name) if name in CLASSES else -1
            instances.append({"bbox_3d": [*centre.tolist(), wlh[1], wlh[0], wlh[2], q.yaw_pitch_roll[0]], "bbox_label": label,
                              "bbox_label_3d": label, "velocity": (to_lidar @ tables.velocity(ann))[:2].tolist(),
                              "num_lidar_pts": ann["num_lidar_pts"], "num_radar_pts": ann["num_radar_pts"],
                              "bbox_3d_isvalid": ann["num_lidar_pts"] + ann["num_radar_pts"] > 0})
        info["instances"] = instances
        info["cam_instances"] = {cam: [c for o in nus.camera_objects(tables, sample, cam) if (c := _cam_instance(o))]
                                 for cam in nus.CAMERAS}
        if split == "train":
            db = _db_objects(tables, lidar_sd, info, out, prefix)
    return Spool.encode(info), db


_sample_info = guarded(sample_info)


def _multisweep_points(tables: nus.Tables, lidar_sd: dict, info: dict) -> np.ndarray:
    """The keyframe and its sweeps in the keyframe's LiDAR frame, as mmdet3d's LoadPointsFromMultiSweeps
    builds them for the GT database (its transform convention and close-point removal included)."""
    points = nus.load_points(tables.path(lidar_sd)).copy()
    points[:, 4] = 0
    parts = [points]
    not_close = lambda p: p[~((np.abs(p[:, 0]) < CLOSE_RADIUS) & (np.abs(p[:, 1]) < CLOSE_RADIUS))]  # noqa: E731
    if "lidar_sweeps" not in info:
        parts += [not_close(points)] * SWEEPS_FOR_DB
    for sweep in info.get("lidar_sweeps", [])[:SWEEPS_FOR_DB]:
        pts = not_close(nus.load_points(tables.root / sweep["lidar_points"]["lidar_path"]).copy())
        lidar2sensor = np.array(sweep["lidar_points"]["lidar2sensor"])
        pts[:, :3] = pts[:, :3] @ lidar2sensor[:3, :3]
        pts[:, :3] -= lidar2sensor[:3, 3]
        pts[:, 4] = info["timestamp"] - sweep["timestamp"]
        parts.append(pts)
    return np.concatenate(parts)


def _db_objects(tables, lidar_sd, info, out: Path, prefix: str) -> list[tuple[str, dict]]:
    valid = [i for i in info["instances"] if i["bbox_3d_isvalid"] and i["bbox_label_3d"] >= 0]
    if not valid:
        return []
    points = _multisweep_points(tables, lidar_sd, info)
    boxes = np.array([[*i["bbox_3d"], *np.nan_to_num(i["velocity"])] for i in valid], dtype=np.float64)
    boxes[:, 2] -= boxes[:, 5] / 2  # gravity centre -> bottom centre, mmdet3d's LiDAR box origin
    inside = points_in_boxes(points, boxes[:, :7])
    entries = []
    for gt_idx, (inst, box3d) in enumerate(zip(valid, boxes.astype(np.float32), strict=True)):
        name = CLASSES[inst["bbox_label_3d"]]
        obj = points[inside[:, gt_idx]]
        obj[:, :3] -= box3d[:3]
        rel = f"{prefix}_gt_database/{info['sample_idx']}_{name}_{gt_idx}.bin"
        obj.tofile(out / rel)
        entries.append((name, {"name": name, "path": rel, "image_idx": info["sample_idx"], "gt_idx": gt_idx,
                               "box3d_lidar": box3d, "num_points_in_gt": len(obj), "difficulty": 0}))
    return entries


def _categories(tables: nus.Tables) -> set[str]:
    """Category names of the annotations of every sample whose links resolve (a broken sample is skipped and
    listed, naming the token that points nowhere)."""
    return {tables.category(ann) for sample, anns in tables.anns.items() if sample not in tables.broken for ann in anns}


def _jobs(root: Path, version: str, skips: Skips) -> tuple[nus.Tables, dict[str, list[tuple[str, int]]]]:
    """The tables, and per split its samples in sample-table order (as the reference) with their ``sample_idx``
    (the position in the split)."""
    if version not in nus.VERSIONS:
        raise InputError(root, f"unknown nuScenes version {version!r}; expected one of {', '.join(nus.VERSIONS)}")
    tables = nus.Tables(root, version)
    scene_split = {name: split for split, names in scene_splits(version).items() for name in names}
    split_of = {s["token"]: scene_split.get(s["name"]) for s in tables.rows["scene"]}
    jobs: dict[str, list] = {split: [] for split in scene_splits(version)}
    for name, exc in tables.unlinked:  # records of no sample: listed, never silently dropped
        skips.add(exc, name)
    for sample in tables.rows["sample"]:
        with skips.sample(f"sample {sample['token']}"):  # a sample of no scene has no split
            scene = tables.follow("sample", sample, "scene_token", "scene")
            if (split := split_of[scene["token"]]) is not None:
                jobs[split].append(sample["token"])
    return tables, {split: [(t, i) for i, t in enumerate(tokens)] for split, tokens in jobs.items()}


def _write_samples(tables: nus.Tables, out: Path, part: dict, prefix: str, max_sweeps: int, workers: int | None,
                   skips: Skips, shard: int = 0, shards: int = 1) -> dict:
    """The samples of ``part`` converted under ``out`` (GT-database files; infos and entries spooled); the record."""
    global _TABLES
    _TABLES = tables
    (out / f"{prefix}_gt_database").mkdir(exist_ok=True)
    spools = SplitSpools(out / SPOOLS, skips)
    try:
        with worker_pool(workers) as pool:
            for split, items in part.items():
                # sample_idx is the position in the split (as the reference); a skipped sample leaves a gap
                results = pool.imap(_sample_info, [(t, i, split, out, prefix, max_sweeps) for t, i in items], chunksize=4)
                spools.collect(split, [f"sample {t}" for t, _ in items], results, f"mmdet3d nuscenes infos ({split})",
                               "sample")
    finally:
        _TABLES = None
    return spools.finish(shard=shard, shards=shards)


def _assemble(root: Path, out: Path, shards: list[Path], tables: nus.Tables, version: str, prefix: str) -> dict:
    """The data root's pickles at ``out`` from the shards' spools (in shard order), the source linked in; the
    spools removed; samples per info file."""
    records = shard_records(shards)
    for sub in ("samples", "sweeps", "maps", version):
        if (root / sub).is_dir():
            os.symlink(root / sub, out / sub)
    ignored = sorted(_categories(tables) - set(NAME_MAPPING) - set(CLASSES))
    metainfo = {"categories": {**{c: i for i, c in enumerate(CLASSES)}, **{c: -1 for c in ignored}},
                "dataset": "nuscenes", "version": version, "info_version": "1.1"}
    splits = list(records[0]["counts"])
    for split in splits:
        write_pickle(out / f"{prefix}_infos_{split}.pkl",
                     {"metainfo": metainfo, "data_list": tuple(d / SPOOLS / f"{split}.spool" for d in shards)})
    if "train" in splits:
        write_dbinfos(out / f"{prefix}_dbinfos_train.pkl", [d / SPOOLS / "db.stream" for d in shards])
    write_skipped(out, records)
    for d in shards:
        shutil.rmtree(d / SPOOLS, ignore_errors=True)
    return {split: sum(r["counts"][split] for r in records) for split in splits}


def write_nuscenes_infos(root: str | Path, out: str | Path, version: str = "v1.0-trainval", prefix: str = "nuscenes",
                         max_sweeps: int = 10, workers: int | None = None, skips: Skips = STRICT) -> dict:
    """Write the mmdet3d data root for a nuScenes ``version`` under ``out`` (atomically); samples per info file.
    A bad sample (a token pointing nowhere, a missing file) raises, or with non-strict ``skips`` is left out and
    listed in ``skipped.json``; unreadable tables always raise. The same as ``write_nuscenes_shard``'s shards
    merged by ``merge_nuscenes_shards``, in one process."""
    root = Path(root).resolve()
    tables, jobs = _jobs(root, version, skips)
    with atomic_dir(out) as tmp:
        _write_samples(tables, tmp, jobs, prefix, max_sweeps, workers, skips)
        return _assemble(root, tmp, [tmp], tables, version, prefix)


def shard_files(root: str | Path, shard: int, shards: int, version: str = "v1.0-trainval",
                max_sweeps: int = 10) -> set[str]:
    """The sensor files (``samples/``, ``sweeps/``) shard ``shard`` of ``shards`` reads: its samples' keyframes and
    the LiDAR sweeps before each (``max_sweeps``), as ``sample_info`` follows them; the tables alone say which."""
    tables, jobs = _jobs(Path(root).resolve(), version, STRICT)
    files = set()
    for items in shard_of(jobs, shard, shards).values():
        for token, _ in items:
            keyframes = tables.sample_data.get(token, {})  # a sample without them: its writer names it
            files |= {sd["filename"] for sd in keyframes.values()}
            sd, n = keyframes.get("LIDAR_TOP"), 0
            while sd is not None and n < max_sweeps and sd["prev"]:
                sd, n = tables.follow("sample_data", sd, "prev", "sample_data"), n + 1
                files.add(sd["filename"])
    return files


def sensor_file(path: str) -> str | None:
    """A nuScenes sensor file's path (``samples/...``, ``sweeps/...``), ``shard_files``' keys; None for the tables and
    maps (``refs.local_shard``)."""
    return path if path.startswith(("samples/", "sweeps/")) else None


def write_nuscenes_shard(root: str | Path, out: str | Path, shard: int, shards: int, version: str = "v1.0-trainval",
                         prefix: str = "nuscenes", max_sweeps: int = 10, workers: int | None = None) -> dict:
    """Shard ``shard`` of ``shards`` (a contiguous range of the samples in dataset order), strictly, at ``out``
    (atomically): its GT-database files and spools; the shard record."""
    root = Path(root).resolve()
    tables, jobs = _jobs(root, version, STRICT)
    with atomic_dir(out) as tmp:
        return _write_samples(tables, tmp, shard_of(jobs, shard, shards), prefix, max_sweeps, workers, STRICT, shard,
                              shards)


def merge_nuscenes_shards(root: str | Path, shards: list[str | Path], out: str | Path, version: str = "v1.0-trainval",
                          prefix: str = "nuscenes") -> dict:
    """The data root at ``out`` (atomically) from ``write_nuscenes_shard``'s outputs: byte for byte what
    ``write_nuscenes_infos`` writes in one process."""
    root = Path(root).resolve()
    tables, _ = _jobs(root, version, STRICT)
    with atomic_dir(out) as tmp:
        counts = _assemble(root, tmp, gather_shards(shards, tmp), tables, version, prefix)
        shutil.rmtree(tmp / SPOOLS)
        return counts
