"""Synthetic recorded drives written with rosbags, the library ingest reads them with: ROS 2 bags (MCAP or sqlite3
storage, a rosbag2 directory as ``ros2 bag record`` writes it) or ROS 1 bags.

A moving ego (10 Hz LiDAR scans; ``/tf`` at 50 Hz: ``map -> odom`` static, ``odom -> base_link`` timed), one
LiDAR (``sensor_msgs/PointCloud2`` with a configurable field layout: order, datatypes, padding) and one to six
cameras around it (``sensor_msgs/CompressedImage`` JPEG or raw ``sensor_msgs/Image``, ``sensor_msgs/CameraInfo``),
their mounting on ``/tf_static``. Each camera's view is a frame of the synthetic KITTI renderer (``kitti.py``),
the scan its points. Header times are the sensors' (cameras a few milliseconds off the LiDAR, with jitter); the
recorder's log times add a latency per sensor, and messages are written in log-time order.

Events for screening, by scan index (``Events``): blurred frames (every camera Gaussian-blurred), dark and
over-exposed frames, a stop (the ego stands still and every camera sees the same scene, sensor noise aside) and
camera images missing (the scan then has no partner within the tolerance). ``synth_recording`` returns them with
the topics, so tests know what ingest and screening must find.
"""
from __future__ import annotations

import heapq
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from admlops.errors import UsageError

T0 = 1_700_000_000_000_000_000  # ns: 2023-11-14
LIDAR_PERIOD = 100_000_000  # 10 Hz
TF_PERIOD = 20_000_000  # 50 Hz
LATENCY = {"lidar": 30_000_000, "camera": 15_000_000, "tf": 1_000_000}
SPEED = 8.0  # m/s while driving
STORAGES = ("mcap", "sqlite3", "ros1")
# PointCloud2 layouts: (name, datatype, offset) and point_step. "xyzi": the common packed layout; "ouster": an
# Ouster-style cloud (intensity after padding, more fields, 48-byte points); "reordered": intensity first, float64
# coordinates, padding between (any order must work).
LAYOUTS = {
    "xyzi": ([("x", 7, 0), ("y", 7, 4), ("z", 7, 8), ("intensity", 7, 12)], 16),
    "ouster": ([("x", 7, 0), ("y", 7, 4), ("z", 7, 8), ("intensity", 7, 16), ("t", 6, 20), ("reflectivity", 4, 24),
                ("ring", 4, 26), ("ambient", 4, 28), ("range", 6, 32)], 48),
    "reordered": ([("intensity", 7, 0), ("x", 8, 8), ("y", 8, 16), ("z", 8, 24), ("ring", 4, 32)], 40),
    "no-z": ([("x", 7, 0), ("y", 7, 4), ("intensity", 7, 8)], 12),  # bad input: a cloud ingest must refuse
}
NUMPY = {2: "u1", 4: "u2", 6: "u4", 7: "f4", 8: "f8"}


@dataclass
class Events:
    blurred: tuple[int, ...] = ()
    dark: tuple[int, ...] = ()
    bright: tuple[int, ...] = ()
    stop: tuple[int, int] | None = None  # scans [start, end) standing still
    missing: dict[str, tuple[int, ...]] = field(default_factory=dict)  # camera -> scans without its image
    clock_jump: tuple[int, ...] = ()  # scans whose LiDAR header time is 0.15 s early: out of order (bad input)


def default_topics(cameras: int) -> dict:
    """The recording section of a dataset definition for the generator's default topics (Autoware's naming)."""
    names = ["front", "front_left", "back_left", "back", "back_right", "front_right"][:cameras]
    return {
        "lidar": {"topic": "/sensing/lidar/top/pointcloud_raw", "intensity_field": "intensity"},
        "cameras": {n: {"image": f"/sensing/camera/{n}/image_raw/compressed", "info": f"/sensing/camera/{n}/camera_info"}
                    for n in names},
        "frames": {"world": "map", "base": "base_link"},
    }


def _make(ts, typename: str, **values):
    """A message of ``typename`` from ``values`` matched to its fields case-insensitively (ROS 1 spells some in
    capitals); fields not given (ROS 1's header ``seq``) get zero."""
    cls = ts.types[typename]
    kwargs = {}
    for name, _ in ts.fielddefs[typename][1]:
        kwargs[name] = values.get(name, values.get(name.lower(), 0))
    return cls(**kwargs)


def _quat(yaw: float) -> tuple[float, float, float, float]:
    return 0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2)


def _matrix_quat(r: np.ndarray) -> tuple[float, float, float, float]:
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return x, y, z, w


class _Bag:
    """One bag being written: connections by topic, serialisation by the storage's wire format."""

    def __init__(self, path: Path, storage: str):
        from rosbags.typesys import Stores, get_typestore

        self.ros1 = storage == "ros1"
        self.ts = get_typestore(Stores.ROS1_NOETIC if self.ros1 else Stores.ROS2_HUMBLE)
        if self.ros1:  # rosbags' ROS 1 set lacks tf2_msgs; its definition (as in ROS 1) goes into the bag
            from rosbags.typesys import get_types_from_msg

            self.ts.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
            from rosbags.rosbag1 import Writer

            self.writer = Writer(path)
        else:
            from rosbags.rosbag2 import StoragePlugin, Writer

            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            self.writer = Writer(path, version=9, storage_plugin=plugin)
        self.writer.open()
        self.conns = {}

    def add(self, topic: str, typename: str) -> None:
        self.conns[topic] = (self.writer.add_connection(topic, typename, typestore=self.ts), typename)

    def write(self, topic: str, logtime: int, msg) -> None:
        conn, typename = self.conns[topic]
        data = self.ts.serialize_ros1(msg, typename) if self.ros1 else self.ts.serialize_cdr(msg, typename)
        self.writer.write(conn, logtime, data)

    def header(self, stamp: int, frame_id: str):
        t = _make(self.ts, "builtin_interfaces/msg/Time", sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000)
        return _make(self.ts, "std_msgs/msg/Header", stamp=t, frame_id=frame_id)

    def transform(self, stamp: int, parent: str, child: str, xyz, quat):
        ts = self.ts
        tr = _make(ts, "geometry_msgs/msg/Transform",
                   translation=_make(ts, "geometry_msgs/msg/Vector3", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
                   rotation=_make(ts, "geometry_msgs/msg/Quaternion", x=quat[0], y=quat[1], z=quat[2], w=quat[3]))
        return _make(ts, "geometry_msgs/msg/TransformStamped", header=self.header(stamp, parent), child_frame_id=child,
                     transform=tr)


def _cloud(bag: _Bag, stamp: int, frame: str, points: np.ndarray, layout: str):
    fields, step = LAYOUTS[layout]
    dtype = np.dtype({"names": [f[0] for f in fields], "formats": ["<" + NUMPY[f[1]] for f in fields],
                      "offsets": [f[2] for f in fields], "itemsize": step})
    arr = np.zeros(len(points), dtype=dtype)
    for i, name in enumerate(("x", "y", "z", "intensity")):
        if name in arr.dtype.names:
            arr[name] = points[:, i]
    if "ring" in arr.dtype.names:
        arr["ring"] = np.arange(len(points)) % 64
    pf = [_make(bag.ts, "sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=1) for n, d, o in fields]
    return _make(bag.ts, "sensor_msgs/msg/PointCloud2", header=bag.header(stamp, frame), height=1, width=len(points),
                 fields=pf, is_bigendian=False, point_step=step, row_step=step * len(points),
                 data=np.frombuffer(arr.tobytes(), dtype=np.uint8), is_dense=True)


def _image(bag: _Bag, stamp: int, frame: str, img: Image.Image, compressed: bool):
    if compressed:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        return _make(bag.ts, "sensor_msgs/msg/CompressedImage", header=bag.header(stamp, frame), format="jpeg",
                     data=np.frombuffer(buf.getvalue(), dtype=np.uint8))
    pixels = np.asarray(img)[..., ::-1].copy()  # bgr8, as most camera drivers publish
    return _make(bag.ts, "sensor_msgs/msg/Image", header=bag.header(stamp, frame), height=img.height, width=img.width,
                 encoding="bgr8", is_bigendian=0, step=img.width * 3, data=pixels.reshape(-1))


def _camera_info(bag: _Bag, stamp: int, frame: str, K: np.ndarray, width: int, height: int):
    P = np.hstack([K, np.zeros((3, 1))])
    roi = _make(bag.ts, "sensor_msgs/msg/RegionOfInterest", do_rectify=False)
    return _make(bag.ts, "sensor_msgs/msg/CameraInfo", header=bag.header(stamp, frame), height=height, width=width,
                 distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1).astype(np.float64),
                 r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi)


def beam_returns(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` returns of a 64-beam spinning LiDAR 1.73 m above a flat ground walled at 40-80 m (velodyne frame)."""
    elevation = np.deg2rad(rng.integers(0, 64, n) * (26.9 / 63) - 24.9)
    azimuth = rng.uniform(-np.pi, np.pi, n)
    wall = rng.uniform(40, 80, n)
    rng_ground = np.where(elevation < 0, 1.73 / np.tan(-np.minimum(elevation, -1e-3)), np.inf)
    r = np.minimum(rng_ground, wall / np.maximum(np.cos(elevation), 1e-3))
    xy = r * np.cos(elevation)
    return np.stack([xy * np.cos(azimuth), xy * np.sin(azimuth), r * np.sin(elevation),
                     rng.uniform(0, 1, n)], axis=1).astype(np.float32)


def _view(seed: int, scene: int, camera: int, index: int, events: Events, frozen: bool) -> tuple[Image.Image, np.ndarray]:
    """The camera's image of ``scene`` with the frame's events applied, and the scan (velodyne frame)."""
    from admlops.components.synth.kitti import render_frame

    image, _, calib, points = render_frame(seed, scene * 8 + camera)
    rng = np.random.default_rng([seed, index, camera, 7])
    pixels = np.asarray(image, dtype=np.float32)
    if frozen:  # the same scene seen again: only the sensor's noise differs
        pixels = pixels + rng.normal(0, 2.0, pixels.shape)
    if index in events.dark:
        pixels = pixels * 0.08
    if index in events.bright:
        pixels = 235 + pixels * 0.2
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if index in events.blurred:
        image = image.filter(ImageFilter.GaussianBlur(radius=4))
    return image, points, calib


def synth_recording(out: str | Path, frames: int = 40, cameras: int = 1, storage: str = "mcap", seed: int = 0,
                    topics: dict | None = None, compressed: bool = True, layout: str = "xyzi",
                    events: Events | None = None, points: int = 0) -> dict:
    """Write a recording of ``frames`` LiDAR scans at ``out`` (a rosbag2 directory, or a ``.bag`` file for ROS 1);
    ``topics``: a definition's recording section (default: ``default_topics``); ``points``: pad each scan to this
    many points with a 360-degree 64-beam pattern (a real sensor's density; 0: the renderer's scan as it is).
    Returns the topics, the events and the number of scans written."""
    from admlops.components.synth.kitti import BASE_CALIB
    from admlops.dataset_formats import kitti

    if storage not in STORAGES:
        raise UsageError(f"storage {storage!r}: expected one of {', '.join(STORAGES)}")
    if layout not in LAYOUTS:
        raise UsageError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if not 1 <= cameras <= 6 or frames < 1:
        raise UsageError(f"expected 1 to 6 cameras and at least one frame, got {cameras} cameras, {frames} frames")
    topics = topics or default_topics(cameras)
    events = events or Events()
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out} exists already: a recording is written once")
    out.parent.mkdir(parents=True, exist_ok=True)
    cams = list(topics["cameras"].items())[:cameras]
    world, base = topics["frames"]["world"], topics["frames"]["base"]
    lidar_topic, lidar_frame = topics["lidar"]["topic"], "lidar_top"
    bag = _Bag(out, storage)
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    for topic, typename in [("/tf_static", "tf2_msgs/msg/TFMessage"), ("/tf", "tf2_msgs/msg/TFMessage"),
                            (lidar_topic, "sensor_msgs/msg/PointCloud2")] + \
            [(t, image_type) for _, c in cams for t in [c["image"]]] + \
            [(c["info"], "sensor_msgs/msg/CameraInfo") for _, c in cams]:
        bag.add(topic, typename)
    rng = np.random.default_rng(seed)
    # static: map -> odom, base_link -> lidar_top, lidar_top -> each camera's optical frame (yawed by 60 deg each);
    # the renderer's per-frame calibration jitter (1% focal, 0.3 deg rectification) is left out of the mounting
    velo_from_cam = np.linalg.inv(kitti.to_homogeneous(np.asarray(BASE_CALIB["Tr_velo_to_cam"])))
    statics = [bag.transform(T0, world, "odom", (1.0, -2.0, 0.0), _quat(0.1)),
               bag.transform(T0, base, lidar_frame, (0.9, 0.0, 1.8), _quat(0.0))]
    for k, (name, _) in enumerate(cams):
        yaw = np.array([[math.cos(k * math.pi / 3), -math.sin(k * math.pi / 3), 0],
                        [math.sin(k * math.pi / 3), math.cos(k * math.pi / 3), 0], [0, 0, 1]])
        m = np.eye(4)
        m[:3, :3] = yaw @ velo_from_cam[:3, :3]
        m[:3, 3] = yaw @ velo_from_cam[:3, 3]
        statics.append(bag.transform(T0, lidar_frame, f"camera_{name}_optical", m[:3, 3], _matrix_quat(m[:3, :3])))
    heap: list = []
    order = 0

    def push(logtime: int, topic: str, msg) -> None:
        nonlocal order
        heapq.heappush(heap, (logtime, order, topic, msg))
        order += 1

    push(T0 - 500_000_000, "/tf_static", _make(bag.ts, "tf2_msgs/msg/TFMessage", transforms=statics))

    def pose(t: int) -> tuple[float, float, float]:
        """Ego x, y, yaw in odom at time t: driving at SPEED, standing during the stop."""
        s = (t - T0) / 1e9
        if events.stop:
            a, b = (T0 + i * LIDAR_PERIOD for i in events.stop)
            s -= max(0.0, min(t, b) - a) / 1e9 if t > a else 0.0
        yaw = 0.02 * s
        return SPEED * s * math.cos(yaw / 2), SPEED * s * math.sin(yaw / 2), yaw

    scene = 0
    for i in range(frames):
        t = T0 + i * LIDAR_PERIOD
        for tt in range(t - LIDAR_PERIOD if i == 0 else t, t + LIDAR_PERIOD, TF_PERIOD):
            x, y, yaw = pose(tt)
            push(tt + LATENCY["tf"], "/tf", _make(bag.ts, "tf2_msgs/msg/TFMessage",
                                                  transforms=[bag.transform(tt, "odom", base, (x, y, 0.0), _quat(yaw))]))
        frozen = bool(events.stop and events.stop[0] < i < events.stop[1])
        if not frozen:
            scene = i
        scan = None
        for k, (name, c) in enumerate(cams):
            img, pts, calib = _view(seed, scene, k, i, events, frozen)
            scan = pts if scan is None else scan
            stamp = t + 8_000_000 + k * 1_000_000 + int(rng.integers(-3_000_000, 3_000_000))
            frame = f"camera_{name}_optical"
            K = np.asarray(calib["P2"])[:, :3]
            push(stamp + LATENCY["camera"] - 1, c["info"], _camera_info(bag, stamp, frame, K, img.width, img.height))
            if i not in events.missing.get(name, ()):
                push(stamp + LATENCY["camera"], c["image"], _image(bag, stamp, frame, img, compressed))
        if points > len(scan):
            scan = np.concatenate([scan, beam_returns(np.random.default_rng([seed, i, 9]), points - len(scan))])
        stamp = t - 150_000_000 if i in events.clock_jump else t
        push(t + LATENCY["lidar"], lidar_topic, _cloud(bag, stamp, lidar_frame, scan, layout))
        while heap and heap[0][0] < t:
            logtime, _, topic, msg = heapq.heappop(heap)
            bag.write(topic, logtime, msg)
    while heap:
        logtime, _, topic, msg = heapq.heappop(heap)
        bag.write(topic, logtime, msg)
    bag.writer.close()
    return {"path": str(out), "topics": topics, "events": events, "frames": frames, "cameras": [n for n, _ in cams]}
