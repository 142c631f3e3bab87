"""The nuScenes v1.0 format (https://www.nuscenes.org/nuscenes#data-format): 13 relational JSON tables under
``<root>/<version>/`` whose records point at each other by token, plus the sensor files they name.

``Tables`` loads them once, indexes every record by token and resolves links with errors that name the
table file, the record and the token that points nowhere (the devkit raises a bare KeyError). Geometry:
poses are (translation, rotation quaternion w, x, y, z) mapping a frame into its parent
(sensor -> ego -> global); boxes are centre, size (w, l, h) and orientation in the global frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pyquaternion import Quaternion

from admlops.errors import InputError
from admlops.geometry import hull_bounds_in_image

TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
VERSIONS = ("v1.0-trainval", "v1.0-test", "v1.0-mini")


class Tables:
    def __init__(self, root: str | Path, version: str = "v1.0-trainval"):
        self.root, self.version = Path(root), version
        self.dir = self.root / version
        if not self.dir.is_dir():
            raise InputError(self.dir, f"not a nuScenes dataset: no {version}/ table directory")
        self.rows: dict[str, list[dict]] = {}
        self.index: dict[str, dict[str, dict]] = {}
        for name in TABLES:
            path = self.dir / f"{name}.json"
            try:
                rows = json.loads(path.read_text())
            except FileNotFoundError:
                raise InputError(path, "missing nuScenes table") from None
            except json.JSONDecodeError as exc:
                raise InputError(path, f"invalid JSON: {exc.msg}", exc.lineno) from None
            if not isinstance(rows, list) or not all(isinstance(r, dict) and "token" in r for r in rows):
                raise InputError(path, "expected a list of records, each with a 'token'")
            self.rows[name], self.index[name] = rows, {r["token"]: r for r in rows}
        # reverse links the tables only hold one way: keyframe sample_data per sample, annotations per sample.
        # Links are resolved per sample: one that points nowhere marks its sample broken (``check`` raises its
        # error when the sample is read), a record whose own sample cannot be found is listed in ``unlinked``.
        self.broken: dict[str, InputError] = {}
        self.unlinked: list[tuple[str, InputError]] = []
        self.sample_data: dict[str, dict[str, dict]] = {s["token"]: {} for s in self.rows["sample"]}
        self.anns: dict[str, list[dict]] = {s["token"]: [] for s in self.rows["sample"]}
        for sd in self.rows["sample_data"]:
            if sd.get("is_key_frame") and (sample := self._sample_of("sample_data", sd)) is not None:
                try:
                    cs = self.follow("sample_data", sd, "calibrated_sensor_token", "calibrated_sensor")
                    self.sample_data[sample][self.follow("calibrated_sensor", cs, "sensor_token", "sensor")["channel"]] = sd
                except InputError as exc:
                    self.broken.setdefault(sample, exc)
        for ann in self.rows["sample_annotation"]:
            if (sample := self._sample_of("sample_annotation", ann)) is not None:
                self.anns[sample].append(ann)
                try:
                    self.category(ann)
                except InputError as exc:
                    self.broken.setdefault(sample, exc)

    def _sample_of(self, table: str, record: dict) -> str | None:
        """The token of the sample ``record`` (of ``table``) belongs to; None, with the record listed in
        ``unlinked``, when its ``sample_token`` points nowhere."""
        try:
            return self.follow(table, record, "sample_token", "sample")["token"]
        except InputError as exc:
            self.unlinked.append((f"{table} {record['token']}", exc))
            return None

    def check(self, sample_token: str) -> None:
        """Raise the error of the first link of the sample's keyframes or annotations that points nowhere, if any."""
        if sample_token in self.broken:
            raise self.broken[sample_token]

    def follow(self, referrer: str, record: dict, field: str, table: str, index: int | None = None) -> dict:
        """The ``table`` record that ``record`` (of table ``referrer``) points at by its token ``field`` (by the
        ``index``-th token of a list field such as ``attribute_tokens``); an InputError naming the referrer's
        file, the record and the token when there is none."""
        token = record.get(field)
        if index is not None:
            field, token = f"{field}[{index}]", token[index]
        try:
            return self.index[table][token]
        except (KeyError, TypeError):  # TypeError: a token that is no string (a list, an object)
            what = f"{field} {token!r} points nowhere in {table}.json" if token is not None else f"missing {field!r}"
            raise InputError(self.dir / f"{referrer}.json", f"record {record.get('token')!r}: {what}") from None

    def path(self, sd: dict) -> Path:
        """The file of a sample_data record; an error naming the record when it is missing."""
        path = self.root / sd["filename"]
        if not path.is_file():
            raise InputError(self.dir / "sample_data.json", f"record {sd['token']!r}: file {sd['filename']} not found")
        return path

    def pose(self, sd: dict) -> tuple[dict, dict]:
        """(calibrated_sensor, ego_pose) records of a sample_data record."""
        return (self.follow("sample_data", sd, "calibrated_sensor_token", "calibrated_sensor"),
                self.follow("sample_data", sd, "ego_pose_token", "ego_pose"))

    def category(self, ann: dict) -> str:
        """The category name of an annotation (through its instance)."""
        inst = self.follow("sample_annotation", ann, "instance_token", "instance")
        return self.follow("instance", inst, "category_token", "category")["name"]

    def velocity(self, ann: dict, max_time_diff: float = 1.5) -> np.ndarray:
        """Global velocity from the neighbouring annotations of the instance (NaN where it cannot be known),
        the devkit's ``box_velocity``."""
        has_prev, has_next = ann["prev"] != "", ann["next"] != ""
        if not has_prev and not has_next:
            return np.full(3, np.nan)
        first = self.follow("sample_annotation", ann, "prev", "sample_annotation") if has_prev else ann
        last = self.follow("sample_annotation", ann, "next", "sample_annotation") if has_next else ann
        t = [1e-6 * self.follow("sample_annotation", a, "sample_token", "sample")["timestamp"] for a in (first, last)]
        if t[1] - t[0] > max_time_diff * (2 if has_prev and has_next else 1):
            return np.full(3, np.nan)
        return (np.asarray(last["translation"]) - np.asarray(first["translation"])) / (t[1] - t[0])


def camera_objects(tables: Tables, sample: dict, channel: str) -> list[dict]:
    """The annotations of ``sample`` seen by camera ``channel``: 2D box (projected 3D box cut to the image),
    3D box in the camera frame (gravity centre, l h w, yaw about the camera's y), camera-frame velocity, centre and depth.
    The same selection as mmdet3d's get_nuscenes_2d_boxes; ``category`` is the nuScenes name."""
    sd = tables.sample_data[sample["token"]][channel]
    cs, pose = tables.pose(sd)
    intrinsic = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
    to_cam = np.linalg.inv(transform(pose["rotation"], (0, 0, 0))[:3, :3] @ transform(cs["rotation"], (0, 0, 0))[:3, :3])
    canvas = (sd.get("width") or 1600, sd.get("height") or 900)
    out = []
    for ann in tables.anns[sample["token"]]:
        if ann.get("visibility_token", "") not in ("", "1", "2", "3", "4"):
            continue
        centre, wlh, q = box_in_sensor(ann, cs, pose)
        corners = box_corners(centre, wlh, q)
        corners = corners[:, corners[2] > 0]
        if not corners.shape[1]:
            continue
        pix = intrinsic @ corners
        bounds = hull_bounds_in_image((pix[:2] / pix[2]).T, *canvas)
        if bounds is None:
            continue
        proj = intrinsic @ centre
        if proj[2] <= 0:
            continue
        attrs = ann.get("attribute_tokens") or []
        attr = tables.follow("sample_annotation", ann, "attribute_tokens", "attribute", 0)["name"] if attrs else "None"
        out.append({"category": tables.category(ann), "bbox": list(bounds), "centre": centre, "lhw": wlh[[1, 2, 0]],
                    "yaw": -q.yaw_pitch_roll[0], "velocity": (to_cam @ tables.velocity(ann))[0::2],
                    "center_2d": (proj[:2] / proj[2]).tolist(), "depth": float(proj[2]), "attribute": attr,
                    "visibility": ann.get("visibility_token", ""), "num_lidar_pts": ann["num_lidar_pts"]})
    return out


def transform(rotation, translation) -> np.ndarray:
    """4x4 matrix of a (quaternion w, x, y, z; translation) pose."""
    m = np.eye(4)
    m[:3, :3] = Quaternion(rotation).rotation_matrix
    m[:3, 3] = translation
    return m


def box_in_sensor(ann: dict, cs: dict, pose: dict) -> tuple[np.ndarray, np.ndarray, Quaternion]:
    """(centre, size w l h, orientation) of a global annotation box in a sensor's frame at a pose."""
    centre = np.asarray(ann["translation"], dtype=np.float64)
    q = Quaternion(ann["rotation"])
    for rec in (pose, cs):
        inv = Quaternion(rec["rotation"]).inverse
        centre = inv.rotation_matrix @ (centre - np.asarray(rec["translation"]))
        q = inv * q
    return centre, np.asarray(ann["size"], dtype=np.float64), q


def box_corners(centre: np.ndarray, wlh: np.ndarray, q: Quaternion) -> np.ndarray:
    """3x8 corners of a box (the devkit's Box.corners order)."""
    w, l, h = wlh
    corners = np.array([l / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1]), w / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1]),
                        h / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1])])
    return q.rotation_matrix @ corners + centre[:, None]


def load_points(path: Path, dims: int = 5) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % dims:
        raise InputError(path, f"not a nuScenes scan: {raw.size} floats is not a whole number of {dims}-value points")
    return raw.reshape(-1, dims)
