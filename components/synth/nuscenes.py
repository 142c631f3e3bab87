"""Synthetic nuScenes data in the real v1.0 format: the 13 JSON tables, LiDAR scans and 6 camera views.

Layout under ``out`` (as the real dataset; the devkit and mmdet3d's converter read it as ``v1.0-mini``)::

    v1.0-mini/{attribute,calibrated_sensor,category,ego_pose,instance,log,map,sample,
               sample_annotation,sample_data,scene,sensor,visibility}.json
    maps/<map token>.png                              semantic prior mask (the devkit checks it exists)
    samples/LIDAR_TOP/<log>__LIDAR_TOP__<us>.pcd.bin  keyframe scans: float32 x, y, z, intensity, ring
    samples/CAM_*/<log>__CAM_*__<us>.jpg              keyframe images, 1600x900
    sweeps/LIDAR_TOP/<log>__LIDAR_TOP__<us>.pcd.bin   the ``sweeps_per_sample`` 20 Hz scans before each keyframe

Each scene is a drive along a gently curving road (keyframes at 2 Hz) among parked and moving cars, trucks,
pedestrians, bicycles, barriers and cones standing on the ground (global z = 0), plus two far objects out of
LiDAR range. Scan points lie on the object faces that face the sensor and on the ground, transformed
global -> ego -> lidar with the written poses; ``num_lidar_pts`` is the devkit's ``points_in_box`` count on the
written keyframe scan. Images fill the projected boxes with a class colour. Scene names come from the devkit's
mini train/val split (alternating), and scene ``i`` depends only on ``(seed, i)``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from nuscenes.utils import splits
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import points_in_box, view_points
from PIL import Image, ImageDraw
from pyquaternion import Quaternion
from tqdm import tqdm

from admlops.errors import UsageError
from admlops.localfs import atomic_dir

VERSION, LOCATION = "v1.0-mini", "singapore-onenorth"
WIDTH, HEIGHT = 1600, 900
KEY_US, SWEEP_US = 500_000, 50_000  # keyframes at 2 Hz, LiDAR at 20 Hz
BASE_US = 1_533_110_400_000_000  # 2018-08-01 08:00 UTC; scene i starts i days later
LIDAR_RANGE = 60.0

CATEGORIES = {  # the 23 classes of nuScenes v1.0
    "human.pedestrian.adult": "Adult pedestrian moving around the city.",
    "human.pedestrian.child": "Child pedestrian moving around the city.",
    "human.pedestrian.wheelchair": "Wheelchair, without the person pushing it.",
    "human.pedestrian.stroller": "Stroller, without the person pushing it.",
    "human.pedestrian.personal_mobility": "Small personal vehicle ridden upright: skateboard, segway, scooter.",
    "human.pedestrian.police_officer": "Police officer.",
    "human.pedestrian.construction_worker": "Person whose main purpose is construction work.",
    "animal": "Any animal: cat, dog, bird, deer.",
    "vehicle.car": "Vehicle for personal use: sedan, hatchback, wagon, van, SUV, jeep.",
    "vehicle.motorcycle": "Motor-powered two-wheeler (motorcycle, vespa, scooter), rider included.",
    "vehicle.bicycle": "Human or electric powered two-wheeler, rider included.",
    "vehicle.bus.bendy": "Articulated bus; each rigid section is annotated separately.",
    "vehicle.bus.rigid": "Rigid bus or shuttle for more than 10 people.",
    "vehicle.truck": "Vehicle designed to haul cargo: pick-up, lorry, truck, semi-tractor.",
    "vehicle.construction": "Vehicle designed for construction, usually slow or stationary.",
    "vehicle.emergency.ambulance": "Ambulance.",
    "vehicle.emergency.police": "Police vehicle, including police bicycles and motorcycles.",
    "vehicle.trailer": "Trailer towed by a truck, car or motorcycle.",
    "movable_object.barrier": "Temporary metal, concrete or water barrier redirecting traffic.",
    "movable_object.trafficcone": "Traffic cone.",
    "movable_object.pushable_pullable": "Object a pedestrian pushes or pulls: dolly, wheel barrow, trash bin.",
    "movable_object.debris": "Debris on the driveable surface too large to drive over.",
    "static_object.bicycle_rack": "Area or device where bicycles are parked in a row.",
}
ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver in it, is stationary but intends to move.",
    "vehicle.parked": "Vehicle is stationary with no immediate intent to move.",
    "cycle.with_rider": "There is a rider on the bicycle or motorcycle.",
    "cycle.without_rider": "There is no rider on the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.moving": "The human is moving.",
}
VISIBILITY = {"1": "v0-40", "2": "v40-60", "3": "v60-80", "4": "v80-100"}  # real tokens are "1".."4"

# camera axes (right, down, forward) in ego axes (forward, left, up)
CAM_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
CAMERAS = {  # channel: translation in ego (m), yaw (deg), focal length, principal point (px)
    "CAM_FRONT": ((1.700, 0.016, 1.511), 0, 1266.4, 816.3, 491.5),
    "CAM_FRONT_RIGHT": ((1.551, -0.493, 1.496), -55, 1260.8, 808.0, 495.3),
    "CAM_FRONT_LEFT": ((1.524, 0.495, 1.509), 55, 1272.6, 826.6, 479.8),
    "CAM_BACK": ((0.028, 0.003, 1.579), 180, 809.2, 829.2, 481.8),
    "CAM_BACK_LEFT": ((1.036, 0.485, 1.591), 110, 1256.7, 792.1, 492.8),
    "CAM_BACK_RIGHT": ((1.015, -0.481, 1.562), -110, 1259.5, 807.3, 501.2),
}
LIDAR_T, LIDAR_YAW = (0.943713, 0.0, 1.84023), -90  # LIDAR_TOP: x right, y forward, z up


@dataclass(frozen=True)
class Kind:
    category: str
    prob: float
    wlh: tuple[float, float, float]  # mean width, length, height (m)
    speed: float  # typical speed when moving (m/s); 0: never moves
    attrs: tuple[str, ...]  # (moving, static) attribute names; () for objects without attributes
    lateral: tuple[float, float]  # distance from the ego's path (m)
    color: tuple[int, int, int]


VEHICLE, PEDESTRIAN, CYCLE = ("vehicle.moving", "vehicle.parked"), ("pedestrian.moving", "pedestrian.standing"), \
    ("cycle.with_rider", "cycle.without_rider")
KINDS = (
    Kind("vehicle.car", 0.35, (1.95, 4.6, 1.7), 8.0, VEHICLE, (3.0, 7.5), (205, 40, 40)),
    Kind("vehicle.truck", 0.10, (2.6, 7.0, 3.0), 6.0, VEHICLE, (3.5, 8.0), (235, 185, 30)),
    Kind("human.pedestrian.adult", 0.20, (0.68, 0.73, 1.76), 1.4, PEDESTRIAN, (8.0, 12.0), (40, 70, 210)),
    Kind("vehicle.bicycle", 0.10, (0.62, 1.75, 1.3), 4.0, CYCLE, (6.5, 10.0), (40, 175, 60)),
    Kind("movable_object.barrier", 0.13, (2.4, 0.55, 1.0), 0.0, (), (5.5, 8.0), (225, 225, 225)),
    Kind("movable_object.trafficcone", 0.12, (0.42, 0.42, 1.05), 0.0, (), (5.0, 8.0), (250, 120, 20)),
)
COLORS = {k.category: k.color for k in KINDS}
FACES = ((0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (2, 3, 7, 6), (0, 3, 7, 4), (1, 2, 6, 5))  # of Box.corners()


def token(*parts) -> str:
    """A 32-hex-char token, deterministic in ``parts``."""
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


def _yaw(rad: float) -> Quaternion:
    return Quaternion(axis=[0, 0, 1], angle=rad)


def _elements(q: Quaternion) -> list[float]:
    return [float(v) for v in q.elements]


def scene_names(n: int) -> list[str]:
    """``n`` scene names of the devkit's mini split, alternating train and val while both last."""
    train, val = list(splits.mini_train), list(splits.mini_val)
    names = [name for pair in zip(train, val, strict=False) for name in pair] + train[len(val):]
    if not 1 <= n <= len(names):
        raise UsageError(f"scenes must be in 1..{len(names)} (the mini split's scene names), got {n}")
    return names[:n]


def calibrated_sensors(tok) -> dict[str, dict]:
    """calibrated_sensor records by channel: the rig of a nuScenes car, extrinsics relative to the ego frame."""
    calib = {"LIDAR_TOP": dict(token=tok("calib", "LIDAR_TOP"), sensor_token=token("sensor", "LIDAR_TOP"),
                               translation=list(LIDAR_T), rotation=_elements(_yaw(math.radians(LIDAR_YAW))),
                               camera_intrinsic=[])}
    for cam, (t, yaw, f, cx, cy) in CAMERAS.items():
        rot = Quaternion(matrix=_yaw(math.radians(yaw)).rotation_matrix @ CAM_AXES)
        calib[cam] = dict(token=tok("calib", cam), sensor_token=token("sensor", cam), translation=list(t),
                          rotation=_elements(rot), camera_intrinsic=[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return calib


def _to_sensor(ann: dict, pose: dict, cs: dict) -> Box:
    """An annotation's box in a sensor frame, computed exactly as ``NuScenes.get_sample_data`` does."""
    box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]))
    box.translate(-np.array(pose["translation"]))
    box.rotate(Quaternion(pose["rotation"]).inverse)
    box.translate(-np.array(cs["translation"]))
    box.rotate(Quaternion(cs["rotation"]).inverse)
    return box


def _link(records: list[dict]) -> None:
    for a, b in zip(records, records[1:], strict=False):
        a["next"], b["prev"] = b["token"], a["token"]


class _Scene:
    """One drive: the ego path, the objects along it, and the records and files they make."""

    def __init__(self, seed: int, index: int, n_samples: int):
        self.seed, self.index = seed, index
        self.rng = r = np.random.default_rng([seed, index])
        self.start = (float(r.uniform(300, 1500)), float(r.uniform(600, 1800)), float(r.uniform(-math.pi, math.pi)))
        self.speed, self.yaw_rate = float(r.uniform(4.0, 10.0)), float(r.choice([-1, 1]) * r.uniform(0.01, 0.05))
        self.key_s = [(9 * SWEEP_US + j * KEY_US) / 1e6 for j in range(n_samples)]  # keyframe times (s)
        self.objects = self._place_objects(int(r.integers(6, 11)))

    def ego(self, t: float) -> tuple[float, float, float]:
        """Ego (x, y, yaw) at ``t`` seconds into the scene: a constant-curvature drive."""
        x0, y0, yaw0 = self.start
        yaw, k = yaw0 + self.yaw_rate * t, self.speed / self.yaw_rate
        return x0 + k * (math.sin(yaw) - math.sin(yaw0)), y0 - k * (math.cos(yaw) - math.cos(yaw0)), yaw

    def _place_objects(self, n_near: int) -> list[dict]:
        r, probs = self.rng, np.array([k.prob for k in KINDS])
        picks = list(KINDS) + [KINDS[i] for i in r.choice(len(KINDS), n_near - len(KINDS), p=probs / probs.sum())]
        picks += [KINDS[0], KINDS[4]]  # two far objects, out of LiDAR range: no points, valid_flag False
        objects = []
        for n, kind in enumerate(picks):
            for _ in range(50):  # rejection sampling: no overlap with the ego or other objects at any keyframe
                tau = float(r.uniform(self.key_s[0], self.key_s[-1]))
                ex, ey, eyaw = self.ego(tau)
                side = 1 if r.random() < 0.5 else -1  # left-hand traffic: the left lane drives our way
                lat = side * (r.uniform(75, 95) if n >= len(picks) - 2 else r.uniform(*kind.lateral))
                lon = r.uniform(-30, 30)
                if kind.attrs == VEHICLE or (kind.speed and r.random() < 0.5):
                    heading = eyaw + (0.0 if side > 0 else math.pi) + r.normal(0, 0.05)
                else:
                    heading = r.uniform(-math.pi, math.pi)
                moving = bool(kind.speed) and r.random() < 0.6
                xy = (ex + lon * math.cos(eyaw) - lat * math.sin(eyaw), ey + lon * math.sin(eyaw) + lat * math.cos(eyaw))
                obj = dict(kind=kind, tau=tau, xy=xy, heading=float(heading),
                           speed=float(kind.speed * r.uniform(0.6, 1.2)) if moving else 0.0,
                           wlh=tuple(round(d * r.uniform(0.9, 1.1), 3) for d in kind.wlh))
                if not any(self._collides(obj, o, t) for t in self.key_s for o in objects + [None]):
                    objects.append(obj)
                    break
        return objects

    def _collides(self, a: dict, b: dict | None, t: float) -> bool:
        ax, ay, _ = self.box(a, t)[0]
        bx, by, _ = self.box(b, t)[0] if b else self.ego(t)
        radius_b = math.hypot(*b["wlh"][:2]) / 2 if b else 3.0
        return math.hypot(ax - bx, ay - by) < math.hypot(*a["wlh"][:2]) / 2 + radius_b + 0.5

    def box(self, obj: dict, t: float):
        """(centre, wlh, yaw) in the global frame at ``t`` seconds: straight lines at constant speed."""
        d = obj["speed"] * (t - obj["tau"])
        x, y = obj["xy"][0] + d * math.cos(obj["heading"]), obj["xy"][1] + d * math.sin(obj["heading"])
        return (round(x, 4), round(y, 4), round(obj["wlh"][2] / 2, 4)), obj["wlh"], obj["heading"]

    def scan(self, t: float, pose: dict, cs: dict, n_ground: int = 9000) -> np.ndarray:
        """A LiDAR scan at ``t`` in the sensor frame: Nx5 float32 (x, y, z, intensity, ring)."""
        r = self.rng
        e_rot, e_t = Quaternion(pose["rotation"]).rotation_matrix, np.array(pose["translation"])
        l_rot, l_t = Quaternion(cs["rotation"]).rotation_matrix, np.array(cs["translation"])
        origin = e_rot @ l_t + e_t
        rad, theta = np.sqrt(r.uniform(2.5**2, LIDAR_RANGE**2, n_ground)), r.uniform(-math.pi, math.pi, n_ground)
        ground = np.stack([rad * np.cos(theta), rad * np.sin(theta), -np.abs(r.normal(0, 0.02, n_ground)) - 0.005], 1)
        pts, intensity = [ground @ e_rot.T + e_t], [r.uniform(0, 20, n_ground)]  # flat ground: ego z == global z
        for obj in self.objects:
            centre, wlh, yaw = self.box(obj, t)
            dist = math.dist(centre, origin)
            if dist > LIDAR_RANGE:
                continue
            rot, half = _yaw(yaw).rotation_matrix, np.array([wlh[1], wlh[0], wlh[2]]) / 2  # box axes: l, w, h
            for axis, sign in ((0, 1), (0, -1), (1, 1), (1, -1), (2, 1)):  # every face but the bottom
                normal = sign * rot[:, axis]
                if normal @ (origin - centre - normal * half[axis]) <= 0:
                    continue  # turned away from the sensor
                u, v = (a for a in range(3) if a != axis)
                m = int(r.poisson(4 * half[u] * half[v] * 60 * (10 / max(dist, 3.0)) ** 2))  # ~60 pts/m2 at 10 m
                local = np.zeros((m, 3))
                local[:, axis] = sign * half[axis] * 0.97  # just inside the box
                local[:, u], local[:, v] = (r.uniform(-0.97, 0.97, (2, m)) * half[[u, v], None])
                pts.append(local @ rot.T + np.array(centre))
                intensity.append(r.uniform(20, 120, m))
        sensor = ((np.concatenate(pts) - e_t) @ e_rot - l_t) @ l_rot  # global -> ego -> lidar
        elevation = np.degrees(np.arctan2(sensor[:, 2], np.hypot(sensor[:, 0], sensor[:, 1])))
        ring = np.clip(np.floor((elevation + 30.67) / (41.33 / 31)), 0, 31)  # 32 beams, +10.67..-30.67 deg
        return np.column_stack([sensor, np.concatenate(intensity), ring]).astype(np.float32)

    def render(self, anns: list[dict], pose: dict, cs: dict) -> Image.Image:
        """A camera image: sky and road, and every box in front of the camera filled with its class colour."""
        cam_k = np.array(cs["camera_intrinsic"])
        horizon, rows = int(cam_k[1, 2]), np.arange(HEIGHT)[:, None, None]
        sky = np.array([150, 190, 235]) + rows / horizon * np.array([40, 30, 10])
        road = np.array([95, 95, 100]) + (rows - horizon) / (HEIGHT - horizon) * np.array([30, 30, 25])
        image = Image.fromarray((np.where(rows < horizon, sky, road) * np.ones((1, WIDTH, 1))).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        boxes = sorted(((_to_sensor(a, pose, cs), a) for a in anns), key=lambda b: -np.linalg.norm(b[0].center))
        for box, ann in boxes:  # far to near
            corners = box.corners()
            if corners[2].min() < 0.5:
                continue  # (partly) behind the camera
            pix = view_points(corners, cam_k, normalize=True)[:2].T
            for i, face in enumerate(sorted(FACES, key=lambda f: -corners[2, list(f)].mean())):
                shade = 0.6 + 0.08 * i  # nearer faces lighter
                draw.polygon([tuple(pix[j]) for j in face], fill=tuple(int(c * shade) for c in COLORS[ann["category"]]))
        return image

    def write(self, root: Path, name: str, n_sweeps: int) -> dict[str, list[dict]]:
        """Write this scene's files under ``root`` and return its table records."""
        s, tok = self.index, lambda *p: token(self.seed, self.index, *p)
        t0, logfile = BASE_US + s * 86_400_000_000, f"n015-2018-08-{s + 1:02d}-08-00-00+0800"
        log = dict(token=tok("log"), logfile=logfile, vehicle="n015", date_captured=f"2018-08-{s + 1:02d}", location=LOCATION)
        calib = calibrated_sensors(tok)
        t = {k: [] for k in ("scene", "sample", "sample_data", "ego_pose", "instance", "sample_annotation")}
        chains = {channel: [] for channel in calib}

        def sample_data(channel: str, t_us: int, sample: dict, key: bool) -> tuple[dict, dict]:
            x, y, yaw = self.ego((t_us - t0) / 1e6)
            pose = dict(token=tok("ego_pose", channel, t_us), timestamp=t_us, rotation=_elements(_yaw(yaw)),
                        translation=[round(x, 6), round(y, 6), 0.0])
            cam = channel.startswith("CAM")
            ext = "jpg" if cam else "pcd.bin"
            sd = dict(token=tok("sample_data", channel, t_us), sample_token=sample["token"], ego_pose_token=pose["token"],
                      calibrated_sensor_token=calib[channel]["token"], timestamp=t_us, fileformat=ext[:3],
                      is_key_frame=key, height=HEIGHT if cam else 0, width=WIDTH if cam else 0, prev="", next="",
                      filename=f"{'samples' if key else 'sweeps'}/{channel}/{logfile}__{channel}__{t_us}.{ext}")
            t["ego_pose"].append(pose)
            t["sample_data"].append(sd)
            chains[channel].append(sd)
            return sd, pose

        per_instance = [[] for _ in self.objects]
        for j, t_s in enumerate(self.key_s):
            t_us = t0 + round(t_s * 1e6)
            sample = dict(token=tok("sample", j), timestamp=t_us, prev="", next="", scene_token=tok("scene"))
            t["sample"].append(sample)
            for k in range(n_sweeps, 0, -1):  # the 20 Hz sweeps just before a keyframe belong to its sample
                sd, pose = sample_data("LIDAR_TOP", t_us - k * SWEEP_US, sample, False)
                self.scan((t_us - k * SWEEP_US - t0) / 1e6, pose, calib["LIDAR_TOP"]).tofile(root / sd["filename"])
            sd, pose = sample_data("LIDAR_TOP", t_us, sample, True)
            points = self.scan(t_s, pose, calib["LIDAR_TOP"])
            points.tofile(root / sd["filename"])
            anns = []
            for i, obj in enumerate(self.objects):
                centre, wlh, yaw = self.box(obj, t_s)
                kind, dist = obj["kind"], math.dist(centre[:2], pose["translation"][:2])
                attrs = [kind.attrs[0 if obj["speed"] else 1]] if kind.attrs else []
                ann = dict(token=tok("ann", i, j), sample_token=sample["token"], instance_token=tok("instance", i),
                           visibility_token="4" if dist < 20 else "3" if dist < 30 else "2" if dist < 45 else "1",
                           attribute_tokens=[token("attribute", a) for a in attrs], translation=list(centre),
                           size=list(wlh), rotation=_elements(_yaw(yaw)), prev="", next="", num_radar_pts=0)
                ann["num_lidar_pts"] = int(points_in_box(_to_sensor(ann, pose, calib["LIDAR_TOP"]), points[:, :3].T).sum())
                per_instance[i].append(ann)
                anns.append(dict(ann, category=kind.category))
            for c, cam in enumerate(CAMERAS):  # cameras fire a few ms after the LiDAR keyframe, each at its own pose
                sd, pose = sample_data(cam, t_us + 5_000 + 7_000 * c, sample, True)
                self.render(anns, pose, calib[cam]).save(root / sd["filename"], quality=90)
        for i, (obj, anns) in enumerate(zip(self.objects, per_instance, strict=True)):
            _link(anns)
            t["sample_annotation"] += anns
            t["instance"].append(dict(token=tok("instance", i), category_token=token("category", obj["kind"].category),
                                      nbr_annotations=len(anns), first_annotation_token=anns[0]["token"],
                                      last_annotation_token=anns[-1]["token"]))
        for chain in [t["sample"], *chains.values()]:
            _link(chain)
        t["scene"].append(dict(token=tok("scene"), log_token=log["token"], nbr_samples=len(t["sample"]), name=name,
                               first_sample_token=t["sample"][0]["token"], last_sample_token=t["sample"][-1]["token"],
                               description=f"Synthetic drive {s} (seed {self.seed}), {len(self.objects)} objects."))
        return dict(t, log=[log], calibrated_sensor=list(calib.values()))


def _write_scene(args) -> dict[str, list[dict]]:
    root, seed, index, name, n_samples, n_sweeps = args
    return _Scene(seed, index, n_samples).write(root, name, n_sweeps)


def synth_nuscenes(out: str | Path, scenes: int = 2, samples_per_scene: int = 4, sweeps_per_sample: int = 2,
                   seed: int = 0, workers: int | None = None) -> Path:
    """Write ``scenes`` synthetic scenes as a nuScenes ``v1.0-mini`` dataset under ``out``; returns ``out``."""
    names = scene_names(scenes)
    if samples_per_scene < 1 or not 0 <= sweeps_per_sample <= 9:
        raise UsageError(f"need samples_per_scene >= 1 and 0 <= sweeps_per_sample <= 9, "
                         f"got {samples_per_scene} and {sweeps_per_sample}")
    out, channels, map_token = Path(out), ["LIDAR_TOP", *CAMERAS], token("map", LOCATION)
    with atomic_dir(out) as tmp:
        for folder in [*(f"samples/{c}" for c in channels), "sweeps/LIDAR_TOP", "maps", VERSION]:
            (tmp / folder).mkdir(parents=True)
        mask = np.zeros((200, 200), np.uint8)
        mask[80:120] = 255  # a driveable band: the semantic prior map the devkit opens
        Image.fromarray(mask).save(tmp / "maps" / f"{map_token}.png")
        tables = {
            "category": [dict(token=token("category", n), name=n, description=d) for n, d in CATEGORIES.items()],
            "attribute": [dict(token=token("attribute", n), name=n, description=d) for n, d in ATTRIBUTES.items()],
            "visibility": [dict(token=k, level=v, description=f"visibility of whole object is between "
                                f"{v[1:].replace('-', ' and ')}%") for k, v in VISIBILITY.items()],
            "sensor": [dict(token=token("sensor", c), channel=c, modality="camera" if c.startswith("CAM") else "lidar")
                       for c in channels],
        }
        jobs = [(tmp, seed, i, name, samples_per_scene, sweeps_per_sample) for i, name in enumerate(names)]
        with Pool(workers) as pool:
            for part in tqdm(pool.imap(_write_scene, jobs), total=len(jobs), desc="synth nuscenes", unit="scene"):
                for key, records in part.items():
                    tables.setdefault(key, []).extend(records)
        tables["map"] = [dict(token=map_token, category="semantic_prior", filename=f"maps/{map_token}.png",
                              log_tokens=[log["token"] for log in tables["log"]])]
        for key, records in tables.items():
            (tmp / VERSION / f"{key}.json").write_text(json.dumps(records, indent=0))
    return out
