"""The KITTI object-detection format (devkit_object readme): labels, calibration, geometry.

Label line, 15 whitespace-separated fields::

    type truncated occluded alpha left top right bottom height width length x y z rotation_y

Location is the bottom centre of the 3D box in rectified camera coordinates (x right, y down,
z forward), in metres; the 2D box is in pixels of the left colour image (image_2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from admlops.errors import InputError

CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
LABEL_FIELDS = 15
CALIB_SHAPES = {
    "P0": (3, 4),
    "P1": (3, 4),
    "P2": (3, 4),
    "P3": (3, 4),
    "R0_rect": (3, 3),
    "Tr_velo_to_cam": (3, 4),
    "Tr_imu_to_velo": (3, 4),
}


@dataclass(frozen=True)
class KittiObject:
    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # left, top, right, bottom
    dimensions: tuple[float, float, float]  # height, width, length
    location: tuple[float, float, float]  # x, y, z (bottom centre, rectified camera frame)
    rotation_y: float

    def to_line(self) -> str:
        nums = (self.truncated, self.occluded, self.alpha, *self.bbox, *self.dimensions, *self.location, self.rotation_y)
        return " ".join([self.type, f"{nums[0]:.2f}", str(int(nums[1]))] + [f"{v:.2f}" for v in nums[2:]])


def dontcare(bbox: tuple[float, float, float, float]) -> KittiObject:
    """A DontCare region as KITTI writes it: only the 2D box is meaningful."""
    return KittiObject("DontCare", -1.0, -1, -10.0, bbox, (-1.0, -1.0, -1.0), (-1000.0, -1000.0, -1000.0), -10.0)


def parse_label_line(text: str, path: str | Path, lineno: int, classes: tuple[str, ...] = CLASSES) -> KittiObject:
    fields = text.split()
    if len(fields) != LABEL_FIELDS:
        raise InputError(path, f"expected {LABEL_FIELDS} fields, got {len(fields)}", lineno)
    name = fields[0]
    if name not in classes:
        raise InputError(path, f"unknown class {name!r}; expected one of {', '.join(classes)}", lineno)
    values = []
    for i, field in enumerate(fields[1:], start=2):
        try:
            value = float(field)
        except ValueError:
            raise InputError(path, f"field {i} is not a number: {field!r}", lineno) from None
        if not math.isfinite(value):
            raise InputError(path, f"field {i} is not finite: {field!r}", lineno)
        values.append(value)
    left, top, right, bottom = values[3:7]
    if right <= left or bottom <= top:
        raise InputError(path, f"degenerate 2D box (left={left}, top={top}, right={right}, bottom={bottom})", lineno)
    if name != "DontCare":
        if not 0.0 <= values[0] <= 1.0:
            raise InputError(path, f"truncated must be in [0, 1], got {values[0]}", lineno)
        if values[1] not in (0, 1, 2, 3):
            raise InputError(path, f"occluded must be 0, 1, 2 or 3, got {fields[2]}", lineno)
        if min(values[7:10]) <= 0:
            raise InputError(path, f"3D dimensions must be positive, got {values[7:10]}", lineno)
    return KittiObject(
        name, values[0], int(values[1]), values[2], tuple(values[3:7]), tuple(values[7:10]), tuple(values[10:13]), values[13]
    )


def read_label_lines(path: str | Path, classes: tuple[str, ...] = CLASSES) -> list[tuple[int, KittiObject]]:
    """Parse one ``label_2/*.txt`` file into (line number, object); blank lines are allowed, anything
    malformed raises InputError naming the file and line."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read label file: {exc}") from None
    return [(n, parse_label_line(line, path, n, classes)) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_label(path: str | Path, classes: tuple[str, ...] = CLASSES) -> list[KittiObject]:
    return [obj for _, obj in read_label_lines(path, classes)]


def write_label(path: str | Path, objects: list[KittiObject]) -> None:
    Path(path).write_text("".join(o.to_line() + "\n" for o in objects))


def read_calib(path: str | Path) -> dict[str, np.ndarray]:
    """Parse one ``calib/*.txt`` file into matrices (P0-P3 3x4, R0_rect 3x3, Tr_* 3x4)."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read calibration file: {exc}") from None
    calib: dict[str, np.ndarray] = {}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        key = key.strip()
        if not sep or key not in CALIB_SHAPES:
            continue  # extra keys are tolerated, like the devkit does
        try:
            values = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            raise InputError(path, f"{key}: expected numbers", n) from None
        shape = CALIB_SHAPES[key]
        if values.size != shape[0] * shape[1] or not np.isfinite(values).all():
            raise InputError(path, f"{key}: expected {shape[0] * shape[1]} finite numbers, got {values.size}", n)
        calib[key] = values.reshape(shape)
    missing = [k for k in CALIB_SHAPES if k not in calib]
    if missing:
        raise InputError(path, f"missing calibration entries: {', '.join(missing)}")
    return calib


def write_calib(path: str | Path, calib: dict[str, np.ndarray]) -> None:
    lines = [f"{key}: " + " ".join(f"{v:.12e}" for v in calib[key].ravel()) for key in CALIB_SHAPES]
    Path(path).write_text("\n".join(lines) + "\n")


def box3d_corners(dimensions, location, rotation_y) -> np.ndarray:
    """The 8 corners (8x3) of a KITTI 3D box in rectified camera coordinates (first 4 on the ground)."""
    h, w, l = dimensions
    x = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * (l / 2)
    y = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    z = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * (w / 2)
    c, s = math.cos(rotation_y), math.sin(rotation_y)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return (rot @ np.stack([x, y, z])).T + np.asarray(location, dtype=np.float64)


def project(P: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Project Nx3 rectified-camera points with a 3x4 matrix to Nx2 pixels."""
    homo = np.hstack([points, np.ones((len(points), 1))]) @ P.T
    return homo[:, :2] / homo[:, 2:3]


def to_homogeneous(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def rect_to_velo(points: np.ndarray, calib: dict[str, np.ndarray]) -> np.ndarray:
    """Rectified camera coordinates -> Velodyne coordinates (inverse of R0_rect @ Tr_velo_to_cam)."""
    cam_from_velo = to_homogeneous(calib["R0_rect"]) @ to_homogeneous(calib["Tr_velo_to_cam"])
    homo = np.hstack([points, np.ones((len(points), 1))]) @ np.linalg.inv(cam_from_velo).T
    return homo[:, :3]


def alpha_from_rotation(rotation_y: float, x: float, z: float) -> float:
    """Observation angle: rotation_y minus the ray angle, wrapped to [-pi, pi)."""
    a = rotation_y - math.atan2(x, z)
    return (a + math.pi) % (2 * math.pi) - math.pi
