"""ROS messages (ROS 1 and ROS 2, as rosbags deserialises them) to arrays, by their message definitions:

* ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8, mono16; rows may be padded: ``step``) and
  ``sensor_msgs/CompressedImage`` (JPEG / PNG, kept as delivered);
* ``sensor_msgs/CameraInfo`` (K, D and the distortion model; ROS 1 spells the fields in capitals);
* ``sensor_msgs/PointCloud2``: x, y, z and intensity read through the message's own field table (any order,
  offsets, padding, ``point_step``/``row_step``, byte order, datatype), non-finite points dropped;
* ``tf2_msgs/TFMessage`` (``/tf``, ``/tf_static``): a transform buffer that chains frames through the tree and
  interpolates the dynamic transforms in time (translation linearly, rotation by slerp), never extrapolating.
"""
from __future__ import annotations

import bisect
import io

import numpy as np

from admlops.errors import InputError

IMAGE = ("sensor_msgs/msg/Image",)
COMPRESSED = ("sensor_msgs/msg/CompressedImage",)
CAMERA_INFO = ("sensor_msgs/msg/CameraInfo",)
POINTCLOUD = ("sensor_msgs/msg/PointCloud2",)
TF = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")
# PointField.datatype -> numpy type (sensor_msgs/PointField's constants)
POINT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 1, "8UC1": 1, "8UC3": 3, "16UC1": 1}
# a raw sensor's mosaic (ROS's pattern name -> OpenCV's name for the same pattern, as cv_bridge maps them) and
# packed 4:2:2 YUV (ROS's yuv422 is UYVY); both converted to RGB by OpenCV
BAYER = {"bayer_rggb8": "BayerBG", "bayer_bggr8": "BayerRG", "bayer_gbrg8": "BayerGR", "bayer_grbg8": "BayerGB"}
YUV422 = {"yuv422": "UYVY", "uyvy": "UYVY", "yuv422_yuy2": "YUY2", "yuyv": "YUY2"}


class MessageError(ValueError):
    """A message that does not hold what its type promises; the caller names the file, topic and time."""


def stamp_ns(msg) -> int:
    """The message header's time in nanoseconds (the sensor's clock, not the recorder's)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_array(msg) -> np.ndarray:
    """An uncompressed ``sensor_msgs/Image`` as H x W x 3 (RGB) or H x W uint8: RGB/BGR(A), mono 8/16 bit, a Bayer
    mosaic (demosaiced) or packed YUV 4:2:2."""
    enc = msg.encoding
    known = [*CHANNELS, *BAYER, *YUV422]
    if enc not in known:
        raise MessageError(f"image encoding {enc!r} is not supported (expected one of {', '.join(known)})")
    wide = enc in ("mono16", "16UC1")
    itemsize = 2 if wide else 1
    h, w = int(msg.height), int(msg.width)
    c = 2 if enc in YUV422 else CHANNELS.get(enc, 1)
    data = np.asarray(msg.data, dtype=np.uint8)
    if int(msg.step) < w * c * itemsize or data.size < h * int(msg.step):
        raise MessageError(f"image data of {data.size} bytes does not hold {h} rows of step {msg.step} ({w}x{c} {enc})")
    rows = data[: h * int(msg.step)].reshape(h, int(msg.step))[:, : w * c * itemsize]
    if wide:
        dtype = ">u2" if msg.is_bigendian else "<u2"
        return (rows.copy().view(dtype).reshape(h, w) >> 8).astype(np.uint8)
    pixels = rows.reshape(h, w, c) if c > 1 else rows.reshape(h, w)
    if enc in BAYER or enc in YUV422:
        import cv2

        code = f"COLOR_{BAYER[enc]}2RGB" if enc in BAYER else f"COLOR_YUV2RGB_{YUV422[enc]}"
        return cv2.cvtColor(np.ascontiguousarray(pixels), getattr(cv2, code))
    if enc.startswith("bgr"):
        pixels = pixels[..., 2::-1]
    elif c == 4:
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)


def compressed_format(msg) -> str:
    """``jpg`` or ``png`` from a CompressedImage's bytes (its ``format`` string is free text: ``jpeg``,
    ``rgb8; jpeg compressed bgr8``, ...)."""
    head = bytes(np.asarray(msg.data[:8], dtype=np.uint8))
    if head.startswith(b"\xff\xd8"):
        return "jpg"
    if head.startswith(b"\x89PNG"):
        return "png"
    raise MessageError(f"compressed image is neither JPEG nor PNG (format {msg.format!r})")


def gray_preview(data: bytes | np.ndarray, size: int = 320) -> tuple[np.ndarray, tuple[int, int]]:
    """A grey image at most ``size`` pixels wide (float32, 0-255; a JPEG's between ``size`` / 2 and ``size``) of an
    encoded image or an array, for screening, and the image's own (width, height): JPEGs are decoded at a reduced
    scale directly (libjpeg's DCT scaling), so the full image is never built."""
    from PIL import Image

    img = Image.fromarray(data) if isinstance(data, np.ndarray) else Image.open(io.BytesIO(data))
    full = img.size
    # libjpeg's scaling gives at least the size asked for: ask for half, get the reduction nearest ``size``
    img.draft("L", (size // 2, size * img.height // max(img.width, 1) // 2))
    img = img.convert("L")
    if img.width > size:
        img = img.resize((size, max(1, img.height * size // img.width)), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32), full


def camera_info(msg) -> dict:
    """K (3x3), D and the distortion model, and the image size of a CameraInfo (ROS 1: ``K``/``D``)."""
    k = getattr(msg, "k", None)
    k = msg.K if k is None else k
    d = getattr(msg, "d", None)
    d = msg.D if d is None else d
    K = np.asarray(k, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise MessageError(f"camera matrix K {K.ravel().tolist()} has no positive focal length")
    return {"K": K.tolist(), "D": [float(x) for x in d], "distortion_model": str(msg.distortion_model),
            "width": int(msg.width), "height": int(msg.height)}


def pointcloud_xyzi(msg, intensity: str = "intensity") -> np.ndarray:
    """N x 4 float32 (x, y, z, intensity; 0 where the cloud has no ``intensity`` field) of a PointCloud2, read
    through its field table; points with a non-finite coordinate (``is_dense`` false: NaN for no return) dropped."""
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in ("x", "y", "z") if n not in fields]
    if missing:
        raise MessageError(f"PointCloud2 has no {'/'.join(missing)} field (fields: {', '.join(fields) or 'none'})")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in ("x", "y", "z", intensity):
        f = fields.get(name)
        if f is None:
            continue
        if int(f.datatype) not in POINT_TYPES:
            raise MessageError(f"PointCloud2 field {name!r} has unknown datatype {f.datatype}")
        names.append(name)
        formats.append(order + POINT_TYPES[int(f.datatype)])
        offsets.append(int(f.offset))
    step, width, height = int(msg.point_step), int(msg.width), int(msg.height)
    if any(o + np.dtype(t).itemsize > step for o, t in zip(offsets, formats)):
        raise MessageError(f"PointCloud2 fields lie beyond its point_step {step}")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step})
    data = np.asarray(msg.data, dtype=np.uint8)
    row = int(msg.row_step) or width * step
    if row < width * step or data.size < height * row:
        raise MessageError(f"PointCloud2 data of {data.size} bytes does not hold {height} rows of {width} points "
                           f"(point_step {step}, row_step {row})")
    rows = data[: height * row].reshape(height, row)[:, : width * step]
    packed = np.dtype({"names": ["x", "y", "z", intensity], "formats": ["<f4"] * 4, "offsets": [0, 4, 8, 12],
                       "itemsize": 16})
    if dtype == packed:  # the common layout is already the output's: one copy
        out = np.ascontiguousarray(rows).view(np.float32).reshape(-1, 4).copy()
    else:
        points = np.ascontiguousarray(rows).view(dtype).reshape(-1)
        out = np.zeros((points.size, 4), dtype=np.float32)
        for i, name in enumerate(("x", "y", "z", intensity)):
            if name in names:
                out[:, i] = points[name]
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(out[:, 0] + out[:, 1] + out[:, 2])  # one NaN or inf makes the sum so
    return out if finite.all() else out[finite]


def _quat_matrix(q) -> np.ndarray:
    x, y, z, w = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    dot = float(np.dot(a, b))
    if dot < 0:
        b, dot = -b, -dot
    if dot > 0.9995:
        q = a + t * (b - a)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


class TfBuffer:
    """The transform tree of a recording: static edges (``/tf_static``) and timed edges (``/tf``), parent ->
    child. ``lookup(target, source, t)`` is the 4x4 matrix taking points in ``source`` to ``target`` at time ``t``
    (ns), chained through the tree; None where a timed edge has no samples around ``t`` (no extrapolation beyond
    ``slack`` ns)."""

    def __init__(self, slack: int = 0):
        self.static: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent_from_child)
        self.timed: dict[str, tuple[str, list[int], list[np.ndarray]]] = {}  # child -> (parent, stamps, [t, q])
        self.slack = slack

    def add(self, msg, static: bool) -> None:
        for tr in msg.transforms:
            parent, child = tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/")
            t, r = tr.transform.translation, tr.transform.rotation
            pose = np.array([t.x, t.y, t.z, r.x, r.y, r.z, r.w], dtype=np.float64)
            if static:
                m = np.eye(4)
                m[:3, :3], m[:3, 3] = _quat_matrix(pose[3:]), pose[:3]
                self.static[child] = (parent, m)
                continue
            _, stamps, poses = self.timed.setdefault(child, (parent, [], []))
            ns = stamp_ns(tr)
            i = bisect.bisect(stamps, ns)
            stamps.insert(i, ns)
            poses.insert(i, pose)

    def _edge(self, child: str, t: int) -> tuple[str, np.ndarray] | None:
        if child in self.static:
            return self.static[child]
        parent, stamps, poses = self.timed[child]
        i = bisect.bisect_left(stamps, t)
        if i < len(stamps) and stamps[i] == t:
            pose = poses[i]
        elif 0 < i < len(stamps):
            a = (t - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
            p, q = poses[i - 1], poses[i]
            pose = np.concatenate([p[:3] + a * (q[:3] - p[:3]), _slerp(p[3:], q[3:], a)])
        elif stamps and min(abs(t - stamps[0]), abs(t - stamps[-1])) <= self.slack:
            pose = poses[0] if i == 0 else poses[-1]
        else:
            return None
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = _quat_matrix(pose[3:]), pose[:3]
        return parent, m

    def _to_root(self, frame: str, t: int) -> tuple[list[str], np.ndarray] | None:
        chain, m = [frame], np.eye(4)
        while frame in self.static or frame in self.timed:
            edge = self._edge(frame, t)
            if edge is None:
                return None
            frame, step = edge
            if frame in chain:
                raise MessageError(f"the transform tree has a cycle through {frame!r}")
            chain.append(frame)
            m = step @ m
        return chain, m

    def frames(self) -> set[str]:
        return set(self.static) | set(self.timed) | {p for p, _ in self.static.values()} | \
            {p for p, _, _ in self.timed.values()}

    def lookup(self, target: str, source: str, t: int) -> np.ndarray | None:
        """``target_from_source`` at ``t``; None when a timed edge on the way has no samples around ``t``. A frame
        missing from the tree, or two frames in separate trees, is a MessageError."""
        target, source = target.lstrip("/"), source.lstrip("/")
        known = self.frames()
        for f in (target, source):
            if f not in known:
                raise MessageError(f"frame {f!r} is not in the transform tree (/tf, /tf_static: "
                                   f"{', '.join(sorted(known)) or 'empty'})")
        a, b = self._to_root(source, t), self._to_root(target, t)
        if a is None or b is None:
            return None
        if a[0][-1] != b[0][-1]:
            raise MessageError(f"frames {source!r} and {target!r} are in separate transform trees "
                               f"(roots {a[0][-1]!r} and {b[0][-1]!r})")
        return np.linalg.inv(b[1]) @ a[1]
