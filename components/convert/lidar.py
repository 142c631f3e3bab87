"""LiDAR geometry shared by the 3D writers and the analysis: boxes in the LiDAR frame, points inside them,
points inside a camera's view. Vectorised numpy; the conventions are mmdet3d's (LiDAR boxes are
``x, y, z`` of the bottom centre, ``dx, dy, dz`` along the box's own axes, yaw about z, counter-clockwise
from x), so counts agree with what mmdet3d's data pipeline and GT database see.
"""
from __future__ import annotations

import numpy as np

from admlops.dataset_formats import kitti
from admlops.errors import InputError


def limit_period(angle, offset: float = 0.5, period: float = 2 * np.pi):
    """``angle`` wrapped into ``[-offset * period, (1 - offset) * period)``, as mmdet3d wraps yaw."""
    return angle - np.floor(angle / period + offset) * period


def camera_boxes_to_lidar(boxes: np.ndarray, lidar2cam: np.ndarray) -> np.ndarray:
    """KITTI camera boxes ``(x, y, z, l, h, w, ry)`` (bottom centre, rectified camera frame) -> LiDAR boxes
    ``(x, y, z, l, w, h, yaw)``: the centre is mapped exactly, the box keeps only its yaw (as mmdet3d does)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    centres = np.hstack([boxes[:, :3], np.ones((len(boxes), 1))]) @ np.linalg.inv(lidar2cam).T
    yaw = limit_period(-boxes[:, 6] - np.pi / 2)
    return np.column_stack([centres[:, :3], boxes[:, 3], boxes[:, 5], boxes[:, 4], yaw])


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``[N, M]`` mask: point ``n`` lies strictly inside LiDAR box ``m`` (bottom-centre origin). Each box tests
    exactly only the points within its bounding square in x/y (two comparisons over the scan, then the rotated
    test on the few candidates)."""
    points = np.asarray(points)[:, :3]
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    inside = np.zeros((len(points), len(boxes)), dtype=bool)
    px, py = points[:, 0], points[:, 1]
    for m, (x, y, z, dx, dy, dz, yaw) in enumerate(boxes):
        r = 0.5 * float(np.hypot(dx, dy)) + 1e-3  # the box's circumradius, and a margin for float32 coordinates
        near = np.flatnonzero((np.abs(px - x) < r) & (np.abs(py - y) < r))
        rel = points[near].astype(np.float64) - (x, y, z)
        c, s = np.cos(yaw), np.sin(yaw)
        lx, ly = c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]
        inside[near, m] = (np.abs(lx) < dx / 2) & (np.abs(ly) < dy / 2) & (rel[:, 2] > 0) & (rel[:, 2] < dz)
    return inside


VIEW_CHUNK = 8192  # points projected at a time: the temporaries stay in cache (3.6 ms -> 1 ms on a 120k scan)


def in_camera_view(points: np.ndarray, lidar2img: np.ndarray, width: int, height: int,
                   near: float = 0.001, far: float = 100.0) -> np.ndarray:
    """Mask of the points that project inside a ``width`` x ``height`` image at a depth in (near, far):
    the camera frustum mmdet3d cuts KITTI scans to (``velodyne_reduced``). In float64, ``VIEW_CHUNK`` points at a
    time, each projected row written out (no BLAS call: its threads would spin beside the pool's processes)."""
    m = np.asarray(lidar2img, dtype=np.float64)[:3]
    points = np.asarray(points)
    mask = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), VIEW_CHUNK):
        x, y, z = (points[start:start + VIEW_CHUNK, i].astype(np.float64) for i in range(3))
        u, v, depth = (m[k, 0] * x + m[k, 1] * y + m[k, 2] * z + m[k, 3] for k in range(3))
        with np.errstate(divide="ignore", invalid="ignore"):
            u /= depth
            v /= depth
        mask[start:start + len(x)] = (depth > near) & (depth < far) & (u > 0) & (u < width) & (v > 0) & (v < height)
    return mask


def kitti_scan(path) -> np.ndarray:
    """A KITTI Velodyne scan: float32 (x, y, z, reflectance) rows."""
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise InputError(path, f"not a KITTI scan: {raw.size * 4} bytes is not a whole number of (x, y, z, r) points")
    return raw.reshape(-1, 4)


def kitti_lidar(points: np.ndarray, calib: dict, width: int, height: int, objects) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scan cut to image_2's view, LiDAR boxes, [points, boxes] inside mask) for a frame's 3D-labelled ``objects``:
    the ``velodyne_reduced`` scan, and ``num_lidar_pts`` of mmdet3d's KITTI infos as the mask's column sums."""
    lidar2cam = kitti.to_homogeneous(calib["R0_rect"]) @ kitti.to_homogeneous(calib["Tr_velo_to_cam"])
    reduced = points[in_camera_view(points, kitti.to_homogeneous(calib["P2"]) @ lidar2cam, width, height)]
    boxes_cam = np.array([[*o.box3d["location"], o.box3d["dimensions"][2], *o.box3d["dimensions"][:2], o.box3d["rotation_y"]]
                          for o in objects]).reshape(-1, 7)
    boxes = camera_boxes_to_lidar(boxes_cam, lidar2cam)
    return reduced, boxes, points_in_boxes(reduced, boxes)
