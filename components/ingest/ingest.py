"""Recorded drives -> synchronised frames: ROS 2 bags (sqlite3 and MCAP storage, a bag directory or a bare
``.db3`` / ``.mcap`` file) and ROS 1 bags (``.bag``), read with rosbags (pure Python, no ROS installation; the
message definitions come from the bag, or from the ROS distribution's standard set where an old bag has none).

Which topic is which sensor comes from the dataset definition's ``recording`` section (``spec.py``). Every LiDAR
scan is a frame; each camera's image nearest to the scan's header time is paired with it when within the
tolerance, and a scan some camera has no image for is dropped and counted (per camera). The ego pose (the
definition's base frame in its world frame) and each camera's pose relative to the LiDAR come from ``/tf`` and
``/tf_static`` at the scan's time; a scan outside the recorded transforms is dropped and counted too.

``ingest`` writes (atomically)::

    frames.json          the recordings (name, storage, sha256 of every file, duration, messages per topic), the
                         kept frames (id, time, LiDAR file and points, ego pose, speed, and per camera: image
                         file, time, offset to the scan, K, D, camera_from_lidar, the screening measurements),
                         and what was dropped and why
    points/<id>.bin      the scan in the LiDAR frame: float32 x, y, z, intensity (KITTI's velodyne layout)
    images/<id>_<camera>.jpg|png   compressed images as recorded (bytes untouched); raw ones as JPEG (quality 95)
    thumbs.npy           frames x cameras x 48 x 64 grey thumbnails (the near-duplicate rule's input)

Screening (``screen.py``) reads it and decides. The measurements are taken here, while each image is in hand:
the variance of the Laplacian, the mean grey level and the share of clipped pixels on a 320-pixel-wide grey copy
(JPEGs decoded at reduced scale, never in full).

Bad input — a bag that cannot be opened or read (truncated, corrupt), a topic the definition names that the bag
lacks, a topic of another message type, a sensor's header times going backwards, a PointCloud2 without x/y/z, a
message that does not hold what its type says — is an InputError naming the file, the topic and the time (exit
3), and nothing is written.
"""
from __future__ import annotations

import bisect
import io
import json
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from admlops.components.ingest import messages as m
from admlops.components.ingest.spec import RecordingSpec, recording_spec
from admlops.cpu import one_blas_thread
from admlops.definition import load_definition
from admlops.errors import InputError
from admlops.localfs import atomic_dir, file_sha256

THUMB = (48, 64)
JPEG_QUALITY = 95
EXPECTED = {"lidar": m.POINTCLOUD, "image": m.IMAGE + m.COMPRESSED, "info": m.CAMERA_INFO}


def find_recordings(source: str | Path) -> list[Path]:
    """The recordings at ``source``: a bag file (``.bag``, ``.mcap``, ``.db3``), a rosbag2 directory (with
    ``metadata.yaml``), or a folder holding any of these (searched one level down, sorted by name)."""
    source = Path(source)
    if not source.exists():
        raise InputError(source, "recording not found: expected a .bag / .mcap / .db3 file, a rosbag2 directory "
                         "(metadata.yaml) or a folder of them")

    def is_bag(p: Path) -> bool:
        return (p.is_dir() and (p / "metadata.yaml").is_file()) or (p.is_file() and p.suffix in (".bag", ".mcap", ".db3"))

    if is_bag(source):
        return [source]
    found = sorted(p for p in source.iterdir() if is_bag(p)) if source.is_dir() else []
    if not found:
        raise InputError(source, "no recording here: expected .bag / .mcap / .db3 files or rosbag2 directories")
    return found


def recording_name(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-") or "recording"


def recording_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file of the recording (a bag file: itself; a rosbag2 directory: each file in it)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {(p.relative_to(path).as_posix() if path.is_dir() else p.name): file_sha256(p) for p in files}


@dataclass
class Pending:
    stamp: int
    index: int
    points: np.ndarray
    frame_id: str
    images: dict = field(default_factory=dict)  # camera -> (stamp, msg, frame_id)


MAX_LAG = 2_000_000_000  # ns: a sensor this far behind the others is not waited for (a dead camera, a gap)


class Synchroniser:
    """LiDAR scans paired with each camera's nearest image in header time, streaming. A scan is decided once every
    camera has shown an image later than the scan plus the tolerance (each sensor's times only go forward), once
    the LiDAR is ``MAX_LAG`` past it (a camera that stopped is not waited for), or when the recording ends; images
    too old to pair with any later scan are let go, so memory holds seconds, not the drive."""

    def __init__(self, cameras: list[str], tolerance: int):
        self.cameras, self.tol = cameras, tolerance
        self.scans: deque[Pending] = deque()
        self.images = {c: deque() for c in cameras}
        self.latest = {c: -(1 << 62) for c in cameras}
        self.lidar = -(1 << 62)

    def _pair(self, scan: Pending, cam: str, stamp: int, item) -> None:
        gap = abs(stamp - scan.stamp)
        if gap <= self.tol and (cam not in scan.images or gap < abs(scan.images[cam][0] - scan.stamp)):
            scan.images[cam] = (stamp, *item)

    def scan(self, scan: Pending) -> list[Pending]:
        self.lidar = max(self.lidar, scan.stamp)
        for cam, queue in self.images.items():
            for stamp, *item in queue:
                self._pair(scan, cam, stamp, item)
        self.scans.append(scan)
        return self._decided()

    def image(self, cam: str, stamp: int, *item) -> list[Pending]:
        self.latest[cam] = stamp
        for scan in self.scans:
            self._pair(scan, cam, stamp, item)
        queue = self.images[cam]
        queue.append((stamp, *item))
        while queue[0][0] < stamp - MAX_LAG:  # no scan still to come is that old (the LiDAR lags less)
            queue.popleft()
        return self._decided()

    def _decided(self, final: bool = False) -> list[Pending]:
        out = []
        while self.scans and (final or self.lidar > self.scans[0].stamp + self.tol + MAX_LAG or
                              all(self.latest[c] > self.scans[0].stamp + self.tol for c in self.cameras)):
            out.append(self.scans.popleft())
        if out:
            oldest = (self.scans[0].stamp if self.scans else out[-1].stamp) - self.tol
            for queue in self.images.values():
                while queue and queue[0][0] < oldest:
                    queue.popleft()
        return out

    def finish(self) -> list[Pending]:
        return self._decided(final=True)


def open_reader(path: Path):
    """rosbags' AnyReader on ``path`` with the ROS distribution's standard types for bags that embed none."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    ros1 = path.is_file() and path.suffix == ".bag"
    return AnyReader([path], default_typestore=get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE))


def _read_errors() -> tuple[type[BaseException], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Reader1Error
    from rosbags.rosbag2 import ReaderError as Reader2Error
    from rosbags.serde import SerdeError

    import sqlite3
    import struct

    return (AnyReaderError, Reader1Error, Reader2Error, SerdeError, sqlite3.Error, struct.error, EOFError,
            KeyError, IndexError, UnicodeDecodeError, AssertionError)


def measure(gray: np.ndarray) -> dict:
    """The screening measurements of a grey image (0-255): variance of the (4-neighbour) Laplacian, mean level,
    share of clipped pixels (at most 2 or at least 253)."""
    lap = gray[1:-1, :-2] + gray[1:-1, 2:] + gray[:-2, 1:-1] + gray[2:, 1:-1] - 4 * gray[1:-1, 1:-1]
    clipped = float(((gray <= 2) | (gray >= 253)).mean())
    return {"sharpness": float(lap.var()), "mean": float(gray.mean()), "clipped": clipped}


def thumbnail(gray: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(gray.astype(np.uint8)).resize(THUMB[::-1], Image.BILINEAR), dtype=np.uint8)


class RecordingReader:
    """One recording read into ``out``: ``read`` writes each frame's files as its scan is decided (``store``),
    ``locate`` gives them their poses and calibration once the whole recording is read."""

    def __init__(self, path: Path, spec: RecordingSpec, out: Path, name: str):
        self.path, self.spec, self.out, self.name = path, spec, out, name
        self.tf = m.TfBuffer()
        self.infos: dict[str, list[tuple[int, dict]]] = {c.name: [] for c in spec.cameras}
        self.last_stamp: dict[str, int] = {}
        self.dropped = {"sync": {c.name: 0 for c in spec.cameras}, "pose": 0}
        self.stored: list[tuple[dict, np.ndarray]] = []  # frames written, awaiting their pose (``locate``)
        self.scans = 0

    def fail(self, topic: str, stamp: int | None, message: str) -> InputError:
        when = f" at {stamp / 1e9:.3f} s ({stamp} ns)" if stamp is not None else ""
        return InputError(self.path, f"topic {topic}{when}: {message}")

    def check_topics(self, reader) -> dict[str, object]:
        """topic -> connection for every sensor topic and the tf topics; missing or mistyped topics are errors."""
        by_topic = {}
        for c in reader.connections:
            by_topic.setdefault(c.topic, c)
        wanted = {}
        for topic, role in self.spec.topics().items():
            kind = role.split()[-1]
            conn = by_topic.get(topic)
            if conn is None:
                raise InputError(self.path, f"topic {topic} ({role}, from {Path(self.spec.definition).name}) is not "
                                 f"in the recording; its topics: {', '.join(sorted(by_topic)) or 'none'}")
            if conn.msgtype not in EXPECTED[kind]:
                raise self.fail(topic, None, f"message type {conn.msgtype} is not a {role} type "
                                f"(expected {' or '.join(EXPECTED[kind])})")
            wanted[topic] = conn
        tf_topics = [t for t in ("/tf", "/tf_static") if t in by_topic]
        if not tf_topics:
            raise InputError(self.path, "topics /tf and /tf_static are not in the recording: the ego pose and the "
                             f"camera-LiDAR transforms come from them; its topics: {', '.join(sorted(by_topic))}")
        for t in tf_topics:
            if by_topic[t].msgtype not in m.TF:
                raise self.fail(t, None, f"message type {by_topic[t].msgtype} is not {' or '.join(m.TF)}")
            wanted[t] = by_topic[t]
        return wanted

    def read(self, progress: tqdm) -> dict:
        """Read the recording, storing its frames; returns its record."""
        roles = self.spec.topics()
        cams = {c.image: c.name for c in self.spec.cameras}
        infos = {c.info: c.name for c in self.spec.cameras}
        sync = Synchroniser([c.name for c in self.spec.cameras], self.spec.sync_tolerance_ns)
        counts: dict[str, int] = {}
        first = last = read = None
        try:
            with open_reader(self.path) as reader:
                wanted = self.check_topics(reader)
                progress.total = (progress.total or 0) + sum(c.msgcount for c in wanted.values())
                progress.refresh()
                index = 0
                for conn, logtime, raw in reader.messages(connections=list(wanted.values())):
                    topic, stamp = conn.topic, None
                    read = (topic, logtime)  # where a reader error after this message is placed
                    try:
                        msg = reader.deserialize(raw, conn.msgtype)
                        counts[topic] = counts.get(topic, 0) + 1
                        if topic in ("/tf", "/tf_static"):
                            self.tf.add(msg, static=topic == "/tf_static")
                            continue
                        stamp = m.stamp_ns(msg)
                        if stamp < self.last_stamp.get(topic, -1):
                            raise self.fail(topic, stamp, f"header time goes back {(self.last_stamp[topic] - stamp) / 1e6:.1f} "
                                            f"ms from the previous message's ({self.last_stamp[topic]} ns): out of order")
                        self.last_stamp[topic] = stamp
                        first, last = (stamp, stamp) if first is None else (min(first, stamp), max(last, stamp))
                        if topic in infos:
                            self.infos[infos[topic]].append((stamp, m.camera_info(msg)))
                        elif topic in cams:
                            self.store(sync.image(cams[topic], stamp, msg, msg.header.frame_id))
                        else:
                            points = m.pointcloud_xyzi(msg, self.spec.intensity_field)
                            self.store(sync.scan(Pending(stamp, index, points, msg.header.frame_id)))
                            index += 1
                    except m.MessageError as exc:
                        raise self.fail(topic, stamp if stamp is not None else logtime, f"{roles.get(topic, topic)}: {exc}") from None
                    except _read_errors() as exc:
                        raise self.fail(topic, logtime, f"message cannot be decoded ({type(exc).__name__}: {exc})") from None
                    finally:
                        progress.update()
                self.store(sync.finish())
        except InputError:
            raise
        except FileNotFoundError as exc:
            raise InputError(self.path, f"cannot open the recording: {exc}") from None
        except _read_errors() as exc:
            where = (f"after topic {read[0]} at {read[1] / 1e9:.3f} s ({read[1]} ns), the last message read"
                     if read else "before any message was read")
            raise InputError(self.path, f"cannot read the recording {where} ({type(exc).__name__}: {exc}): "
                             "truncated or corrupt?") from None
        for cam, found in self.infos.items():
            if not found:
                topic = next(c.info for c in self.spec.cameras if c.name == cam)
                raise InputError(self.path, f"topic {topic} ({cam} info) has no message: no camera intrinsics")
        return {"name": self.name, "file": self.path.name, "storage": storage_of(self.path),
                "sha256": recording_hashes(self.path), "messages": counts,
                "start_ns": first, "end_ns": last}

    def info_at(self, cam: str, stamp: int) -> dict:
        """The camera's CameraInfo last before ``stamp`` (its first, for an image that came before any)."""
        found = self.infos[cam]
        i = bisect.bisect_right(found, stamp, key=lambda item: item[0])
        return found[max(i - 1, 0)][1]

    def store(self, scans: list[Pending]) -> None:
        """Write decided scans' files as soon as they are decided (memory holds seconds of the drive, not the drive):
        the scan, each camera's image and its measurements; a scan some camera has no image for is dropped
        (counted per camera). The pose and calibration come once the recording is read (``locate``)."""
        for scan in scans:
            self.scans += 1
            missing = [c.name for c in self.spec.cameras if c.name not in scan.images]
            for cam in missing:
                self.dropped["sync"][cam] += 1
            if missing:
                continue
            fid = f"{self.name}_{scan.index:06d}"
            (self.out / "points" / f"{fid}.bin").write_bytes(np.ascontiguousarray(scan.points, dtype=np.float32))
            record = {"id": fid, "recording": self.name, "stamp_ns": scan.stamp, "lidar": f"points/{fid}.bin",
                      "lidar_frame": scan.frame_id, "points": int(len(scan.points)), "cameras": {}}
            thumbs = []
            for cam in self.spec.cameras:
                stamp, msg, frame_id = scan.images[cam.name]
                try:
                    data, ext, size, gray = encode_image(msg)
                except m.MessageError as exc:
                    raise self.fail(cam.image, stamp, str(exc)) from None
                name = f"images/{fid}_{cam.name}.{ext}"
                (self.out / name).write_bytes(data)
                record["cameras"][cam.name] = {"image": name, "stamp_ns": stamp, "offset_ms": (stamp - scan.stamp) / 1e6,
                                               "frame": frame_id, "width": size[0], "height": size[1], **measure(gray)}
                thumbs.append(thumbnail(gray))
            self.stored.append((record, np.stack(thumbs)))

    def locate(self) -> list[tuple[dict, np.ndarray]]:
        """The stored frames with the ego pose, the LiDAR's mounting and each camera's intrinsics and pose relative
        to the LiDAR, from the whole transform record and every CameraInfo; a frame outside the recorded transforms
        is dropped (counted, its files removed)."""
        located = []
        for record, thumbs in self.stored:
            t, lidar = record["stamp_ns"], record["lidar_frame"]
            try:
                poses = [self.tf.lookup(self.spec.world, self.spec.base, t), self.tf.lookup(self.spec.base, lidar, t)]
                poses += [self.tf.lookup(v["frame"], lidar, v["stamp_ns"]) for v in record["cameras"].values()]
            except m.MessageError as exc:
                raise self.fail(self.spec.lidar, t, str(exc)) from None
            if any(p is None for p in poses):
                self.dropped["pose"] += 1
                for rel in [record["lidar"], *(v["image"] for v in record["cameras"].values())]:
                    (self.out / rel).unlink()
                continue
            record["ego_pose"], record["lidar_to_ego"] = poses[0].tolist(), poses[1].tolist()
            for (cam, v), pose in zip(record["cameras"].items(), poses[2:]):
                info = self.info_at(cam, v["stamp_ns"])
                v.update(K=info["K"], D=info["D"], distortion_model=info["distortion_model"],
                         camera_from_lidar=pose.tolist())
            located.append((record, thumbs))
        return located


def storage_of(path: Path) -> str:
    if path.suffix == ".bag":
        return "rosbag1"
    if path.is_dir():
        files = [p.suffix for p in path.iterdir()]
        return "rosbag2-mcap" if ".mcap" in files else "rosbag2-sqlite3"
    return "rosbag2-mcap" if path.suffix == ".mcap" else "rosbag2-sqlite3"


def encode_image(msg) -> tuple[bytes, str, tuple[int, int], np.ndarray]:
    """(file bytes, extension, (width, height), grey preview): a CompressedImage's bytes as recorded, a raw
    image as JPEG."""
    from PIL import Image

    if hasattr(msg, "format"):
        ext = m.compressed_format(msg)
        data = bytes(np.asarray(msg.data, dtype=np.uint8))
        try:
            gray, size = m.gray_preview(data)
        except OSError as exc:
            raise m.MessageError(f"compressed image cannot be decoded ({exc})") from None
        return data, ext, size, gray
    pixels = m.image_array(msg)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=JPEG_QUALITY)
    gray, size = m.gray_preview(pixels)
    return buf.getvalue(), "jpg", size, gray


def speeds(records: list[dict]) -> None:
    """Each frame's ego speed (m/s) from the poses of its neighbours in the same recording (central difference;
    one-sided at the ends), written into the records."""
    by_rec: dict[str, list[dict]] = {}
    for r in records:
        by_rec.setdefault(r["recording"], []).append(r)
    for rows in by_rec.values():
        pos = np.array([np.asarray(r["ego_pose"])[:3, 3] for r in rows])
        t = np.array([r["stamp_ns"] for r in rows], dtype=np.float64) / 1e9
        for i, r in enumerate(rows):
            a, b = max(i - 1, 0), min(i + 1, len(rows) - 1)
            r["speed"] = float(np.linalg.norm(pos[b] - pos[a]) / (t[b] - t[a])) if b > a else 0.0


def ingest(source: str | Path, definition: str, out: str | Path, store_uri: str = "") -> dict:
    """Read every recording at ``source`` (``find_recordings``; or a dataset version NAME@VERSION in ``store_uri``
    holding them) with ``definition``'s recording section into ``out`` (layout in the module doc); returns the
    summary (frames kept, dropped by reason, recordings)."""
    from admlops import refs
    from admlops.objectstore import open_store

    definition = load_definition(definition)
    spec = recording_spec(definition)
    if refs.is_reference(str(source)):
        with refs.local_copy(open_store(store_uri), "datasets", str(source)) as (path, _):
            return ingest(path, definition, out)
    paths = find_recordings(source)
    names = [recording_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise InputError(source, f"two recordings share a name ({names}): frame ids would collide")
    out = Path(out)
    with atomic_dir(out) as tmp, one_blas_thread():
        (tmp / "points").mkdir()
        (tmp / "images").mkdir()
        records, thumbs, recordings = [], [], []
        dropped = {"sync": {c.name: 0 for c in spec.cameras}, "pose": 0}
        with tqdm(desc="ingest", unit="msg", total=0) as progress:
            for path, name in zip(paths, names):
                rec = RecordingReader(path, spec, tmp, name)
                recordings.append(rec.read(progress))
                located = rec.locate()
                recordings[-1].update(frames=len(located), scans=rec.scans)
                records += [r for r, _ in located]
                thumbs += [t for _, t in located]
                for cam, n in rec.dropped["sync"].items():
                    dropped["sync"][cam] += n
                dropped["pose"] += rec.dropped["pose"]
        speeds(records)
        np.save(tmp / "thumbs.npy", np.stack(thumbs) if thumbs else np.zeros((0, len(spec.cameras), *THUMB), np.uint8))
        summary = {"definition": definition.name, "recordings": recordings, "frames": len(records),
                   "scans": sum(r["scans"] for r in recordings), "dropped": dropped,
                   "cameras": [c.name for c in spec.cameras], "sync_tolerance_ms": spec.sync_tolerance_ns / 1e6}
        (tmp / "frames.json").write_text(json.dumps({**summary, "frames": records}))
    return summary
