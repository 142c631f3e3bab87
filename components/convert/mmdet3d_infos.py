"""KITTI -> mmdet3d's v2 info files (``kitti_infos_{train,val,trainval}.pkl``: metainfo + data_list), the
format mmdet3d's KittiDataset loads. Field by field what mmdet3d's own ``tools/create_data.py kitti``
writes (checked against it in tests/test_mmdet3d_infos.py), computed in parallel from the record model.

Not written (yet): ``cam_instances`` (monocular, FOV-image-based loading), the reduced point clouds
and the GT database for object-sample augmentation.
"""
from __future__ import annotations

import pickle
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops.components.convert.readers import read_kitti_frame
from admlops.errors import InputError
from admlops.formats import kitti
from admlops.localfs import atomic_dir

CLASSES = ("Pedestrian", "Cyclist", "Car", "Van", "Truck", "Person_sitting", "Tram", "Misc")
METAINFO = {"categories": {**{c: i for i, c in enumerate(CLASSES)}, "DontCare": -1}, "dataset": "kitti", "info_version": "1.1"}
MIN_HEIGHT, MAX_OCCLUSION, MAX_TRUNCATION = (40, 25, 25), (0, 1, 2), (0.15, 0.3, 0.5)  # KITTI easy/moderate/hard


def difficulty(height: float, occluded: int, truncated: float) -> int:
    """KITTI's difficulty: 0 easy, 1 moderate, 2 hard, -1 none of them (devkit eval rules)."""
    for level in range(3):
        if occluded <= MAX_OCCLUSION[level] and height > MIN_HEIGHT[level] and truncated <= MAX_TRUNCATION[level]:
            return level
    return -1


def _points_in_box(points: np.ndarray, box_cam: dict, calib: dict) -> int:
    """LiDAR points inside a KITTI box (camera frame), counted in the camera frame."""
    cam_from_velo = kitti.to_homogeneous(calib["R0_rect"]) @ kitti.to_homogeneous(calib["Tr_velo_to_cam"])
    pts = np.hstack([points[:, :3], np.ones((len(points), 1))]) @ cam_from_velo.T
    h, w, l = box_cam["dimensions"]
    local = pts[:, :3] - np.asarray(box_cam["location"])
    c, s = np.cos(box_cam["rotation_y"]), np.sin(box_cam["rotation_y"])
    x, z = c * local[:, 0] - s * local[:, 2], s * local[:, 0] + c * local[:, 2]
    return int(((np.abs(x) <= l / 2) & (np.abs(z) <= w / 2) & (local[:, 1] <= 0) & (local[:, 1] >= -h)).sum())


def frame_info(args) -> dict:
    training, frame_id = args
    frame = read_kitti_frame(training, frame_id)
    if frame.calib is None:
        raise InputError(training / "calib" / f"{frame_id}.txt", "missing calibration file")
    calib = {k: kitti.to_homogeneous(v) for k, v in frame.calib.items()}
    lidar2cam = calib["R0_rect"].astype(np.float32) @ calib["Tr_velo_to_cam"].astype(np.float32)
    images = {f"CAM{i}": {"cam2img": calib[f"P{i}"].tolist(), "lidar2img": (calib[f"P{i}"] @ lidar2cam).tolist()} for i in range(4)}
    images["CAM2"].update(img_path=frame.image.name, height=frame.height, width=frame.width, lidar2cam=lidar2cam.tolist())
    images["R0_rect"] = calib["R0_rect"].astype(np.float32).tolist()
    points = np.fromfile(frame.lidar, dtype=np.float32).reshape(-1, 4) if frame.lidar else np.zeros((0, 4), np.float32)
    instances, index = [], 0
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
        instances.append({
            "bbox": list(obj.bbox), "bbox_label": label, "bbox_3d": [*loc, *dims_lhw, ry], "bbox_label_3d": label,
            "depth": float(proj[2]), "center_2d": [float(proj[0] / proj[2]), float(proj[1] / proj[2])],
            "num_lidar_pts": _points_in_box(points, obj.box3d, frame.calib) if obj.box3d else -1,
            "difficulty": difficulty(obj.bbox[3] - obj.bbox[1], occ, trunc), "truncated": trunc, "occluded": occ,
            "alpha": alpha, "score": 0.0, "index": index if obj.box3d else -1, "group_id": group_id,
        })
        index += obj.box3d is not None
    return {
        "sample_idx": int(frame_id), "images": images, "instances": instances,
        "lidar_points": {"num_pts_feats": 4, "lidar_path": frame.lidar.name if frame.lidar else f"{frame_id}.bin",
                         "Tr_velo_to_cam": calib["Tr_velo_to_cam"].astype(np.float32).tolist(),
                         "Tr_imu_to_velo": calib["Tr_imu_to_velo"].astype(np.float32).tolist()},
    }


def write_kitti_infos(kitti_root: str | Path, out: str | Path, prefix: str = "kitti", workers: int | None = None) -> dict:
    """Write ``<prefix>_infos_{train,val,trainval}.pkl`` for the ImageSets splits under ``out`` (atomically)."""
    root = Path(kitti_root)
    training = root / "training"
    splits = {}
    for name in ("train", "val"):
        path = root / "ImageSets" / f"{name}.txt"
        if not path.is_file():
            raise InputError(path, "missing split file (mmdet3d infos follow KITTI's ImageSets)")
        splits[name] = path.read_text().split()
    ids = sorted(set(splits["train"]) | set(splits["val"]))
    with Pool(workers) as pool:
        infos = dict(zip(ids, tqdm(pool.imap(frame_info, [(training, i) for i in ids], chunksize=16), total=len(ids),
                                   desc="mmdet3d kitti infos", unit="frame"), strict=True))
    splits["trainval"] = splits["train"] + splits["val"]  # concatenated, as the reference writes it
    counts = {}
    with atomic_dir(out) as tmp:
        for name, frame_ids in splits.items():
            with open(tmp / f"{prefix}_infos_{name}.pkl", "wb") as f:
                pickle.dump({"metainfo": METAINFO, "data_list": [infos[i] for i in frame_ids]}, f)
            counts[name] = len(frame_ids)
    return counts
