"""Synthetic KITTI object data: images, 15-field labels, calibration and Velodyne scans.

Every frame is built from a 3D scene: objects are placed on the ground plane in rectified camera
coordinates, rendered into ``image_2`` by projecting their 3D boxes with P2 (so the 2D boxes are the
projected 3D boxes, clipped to the image), and sampled as LiDAR points on their visible faces
(transformed into the Velodyne frame with R0_rect and Tr_velo_to_cam). Classes differ in size, colour
and shape so a detector can learn them in minutes. Frame ``i`` depends only on ``(seed, i)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from admlops.dataset_formats import kitti
from admlops.errors import UsageError
from admlops.localfs import atomic_dir

WIDTH, HEIGHT = 1242, 375
CAMERA_HEIGHT = 1.65  # metres above the ground, as in KITTI's recording car


@dataclass(frozen=True)
class ClassLook:
    prob: float
    dims: tuple[float, float, float]  # mean height, width, length (m)
    color: tuple[int, int, int]


LOOKS = {
    "Car": ClassLook(0.45, (1.52, 1.63, 3.88), (205, 40, 40)),
    "Pedestrian": ClassLook(0.20, (1.76, 0.66, 0.84), (40, 70, 210)),
    "Cyclist": ClassLook(0.15, (1.74, 0.60, 1.76), (40, 175, 60)),
    "Van": ClassLook(0.10, (2.21, 1.90, 5.08), (135, 60, 175)),
    "Truck": ClassLook(0.10, (3.25, 2.59, 10.1), (235, 185, 30)),
}
PALETTES = ("class", "shared")  # each class its own colour | every object any class's colour
# The 6 faces of kitti.box3d_corners' corner order.
FACES = ((0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))

BASE_CALIB = {
    "P0": [[721.5377, 0, 609.5593, 0], [0, 721.5377, 172.854, 0], [0, 0, 1, 0]],
    "P1": [[721.5377, 0, 609.5593, -387.5744], [0, 721.5377, 172.854, 0], [0, 0, 1, 0]],
    "P2": [[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791], [0, 0, 1, 0.002745884]],
    "P3": [[721.5377, 0, 609.5593, -339.5242], [0, 721.5377, 172.854, 2.199936], [0, 0, 1, 0.002729905]],
    "Tr_velo_to_cam": [
        [7.533745e-03, -9.999714e-01, -6.166020e-04, -4.069766e-03],
        [1.480249e-02, 7.280733e-04, -9.998902e-01, -7.631618e-02],
        [9.998621e-01, 7.523790e-03, 1.480755e-02, -2.717806e-01],
    ],
    "Tr_imu_to_velo": [
        [9.999976e-01, 7.553071e-04, -2.035826e-03, -8.086759e-01],
        [-7.854027e-04, 9.998898e-01, -1.482298e-02, 3.195559e-01],
        [2.024406e-03, 1.482454e-02, 9.998881e-01, -7.997231e-01],
    ],
}


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    return (
        np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    )


def make_calib(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """KITTI's calibration with a per-frame focal-length and rectification jitter (as between drives)."""
    calib = {k: np.array(v, dtype=np.float64) for k, v in BASE_CALIB.items()}
    scale = 1.0 + rng.uniform(-0.01, 0.01)
    for key in ("P0", "P1", "P2", "P3"):
        calib[key][0, 0] *= scale
        calib[key][1, 1] *= scale
    calib["R0_rect"] = _rotation(*rng.uniform(-0.005, 0.005, size=3))
    return calib


def _place_objects(rng, P2, width, height, class_probs=None):
    """Sample non-overlapping objects; returns (type, dims, loc, ry, corners2d) tuples, far first."""
    names = list(LOOKS)
    probs = np.array([(class_probs or {}).get(n, LOOKS[n].prob) for n in names])
    placed, boxes = [], []
    for _ in range(int(rng.integers(3, 10)) * 4):
        if len(placed) >= 8:
            break
        name = names[rng.choice(len(names), p=probs / probs.sum())]
        look = LOOKS[name]
        # 3D values are rounded to the label's 2 decimals first, so labels, pixels and points agree exactly
        dims = tuple(round(d * rng.uniform(0.9, 1.1), 2) for d in look.dims)
        z = rng.uniform(5.0, 42.0)
        x = rng.uniform(-0.6, 0.6) * z + rng.uniform(-2, 2)
        loc = (round(x, 2), round(CAMERA_HEIGHT + rng.normal(0, 0.03), 2), round(z, 2))
        if name in ("Pedestrian", "Cyclist") and rng.random() < 0.5:
            ry = rng.uniform(-math.pi, math.pi)
        else:
            ry = (-math.pi / 2 if rng.random() < 0.6 else math.pi / 2) + rng.normal(0, 0.15)
        ry = round((ry + math.pi) % (2 * math.pi) - math.pi, 2)
        corners = kitti.box3d_corners(dims, loc, ry)
        if corners[:, 2].min() < 1.0:
            continue
        pix = kitti.project(P2, corners)
        full = (pix[:, 0].min(), pix[:, 1].min(), pix[:, 0].max(), pix[:, 1].max())
        clipped = (max(full[0], 0), max(full[1], 0), min(full[2], width - 1), min(full[3], height - 1))
        if clipped[2] - clipped[0] < 12 or clipped[3] - clipped[1] < 20:
            continue
        area = (full[2] - full[0]) * (full[3] - full[1])
        truncation = 1.0 - (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) / area
        if truncation > 0.6 or any(_overlap(clipped, b) > 0.35 for b in boxes):
            continue
        placed.append((name, dims, loc, ry, pix, clipped, truncation))
        boxes.append(clipped)
    placed.sort(key=lambda o: -o[2][2])
    return placed


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _background(rng, width, height, horizon) -> Image.Image:
    rows = np.arange(height)[:, None, None]
    sky = np.array([150, 190, 235]) + (rows / max(horizon, 1)) * np.array([40, 30, 10])
    road = np.array([95, 95, 100]) + ((rows - horizon) / max(height - horizon, 1)) * np.array([30, 30, 25])
    img = np.where(rows < horizon, sky, road) * np.ones((1, width, 1))
    img += rng.normal(0, 6, size=img.shape)
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 8))):  # buildings and poles on the horizon: clutter, not objects
        w, h = rng.uniform(20, 160), rng.uniform(15, 90)
        x = rng.uniform(0, width)
        shade = int(rng.uniform(90, 170))
        draw.rectangle([x, horizon - h, x + w, horizon + 2], fill=(shade, shade - 10, shade - 25))
    for k in (-1, 1):  # lane markings, vanishing at the horizon
        draw.line([(width / 2 + k * 500, height), (width / 2 + k * 8, horizon + 2)], fill=(230, 230, 230), width=3)
    return canvas


def _draw_object(draw: ImageDraw.ImageDraw, name: str, corners3d, pix, rng, palette: str = "class") -> None:
    colour = LOOKS[name].color if palette == "class" else LOOKS[list(LOOKS)[rng.integers(len(LOOKS))]].color
    base = np.clip(np.array(colour) + rng.integers(-20, 21, size=3), 0, 255)
    faces = sorted(FACES, key=lambda f: -corners3d[list(f), 2].mean())
    for i, face in enumerate(faces):
        shade = 0.65 + 0.35 * i / (len(faces) - 1)  # nearer faces lighter
        draw.polygon([tuple(pix[j]) for j in face], fill=tuple(int(c * shade) for c in base))
    x0, y0, x1, y1 = pix[:, 0].min(), pix[:, 1].min(), pix[:, 0].max(), pix[:, 1].max()
    w, h = x1 - x0, y1 - y0
    if name == "Pedestrian":
        r = w * 0.3
        draw.ellipse([(x0 + x1) / 2 - r, y0, (x0 + x1) / 2 + r, y0 + 2 * r], fill=(235, 190, 160))
    elif name == "Cyclist":
        r = min(w * 0.22, h * 0.2)
        for cx in (x0 + r, x1 - r):
            draw.ellipse([cx - r, y1 - 2 * r, cx + r, y1], outline=(20, 20, 20), width=max(2, int(r / 3)))
    elif name in ("Car", "Van"):
        draw.rectangle([x0 + 0.15 * w, y0 + 0.1 * h, x1 - 0.15 * w, y0 + 0.4 * h], fill=(40, 50, 70))


def _object_points(rng, corners, origin, n) -> np.ndarray:
    """n points on the faces of a box that face the sensor at ``origin`` (rectified camera frame)."""
    centre = corners.mean(axis=0)
    pts = []
    for face in FACES:
        a, b, _, d = (corners[j] for j in face)
        normal = np.cross(b - a, d - a)
        if np.dot(normal, a - centre) < 0:
            normal = -normal
        if np.dot(normal, origin - a) <= 0:
            continue
        u, v = rng.random((2, n))
        pts.append(a + u[:, None] * (b - a) + v[:, None] * (d - a))
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def render_frame(seed: int, index: int, width: int = WIDTH, height: int = HEIGHT, class_probs: dict | None = None,
                 palette: str = "class"):
    """Build one frame: (image, labels, calib, velodyne points Nx4 float32); ``class_probs`` (class -> weight)
    overrides the classes' weights (``ClassLook.prob``) when objects are drawn; ``palette`` (``PALETTES``): each
    class in its own colour, or every object in any class's colour (classes then differ by shape and size only)."""
    rng = np.random.default_rng([seed, index])
    calib = make_calib(rng)
    P2 = calib["P2"]
    horizon = int(round(P2[1, 2]))
    image = _background(rng, width, height, horizon)
    draw = ImageDraw.Draw(image)
    ids = Image.new("L", (width, height), 0)
    ids_draw = ImageDraw.Draw(ids)
    objects = _place_objects(rng, P2, width, height, class_probs)
    hull_area = []
    for k, (name, dims, loc, ry, pix, _, _) in enumerate(objects, start=1):
        corners = kitti.box3d_corners(dims, loc, ry)
        _draw_object(draw, name, corners, pix, rng, palette)
        own = Image.new("L", (width, height), 0)
        hull = [tuple(pix[j]) for j in _hull(pix)]
        ImageDraw.Draw(own).polygon(hull, fill=1)
        ids_draw.polygon(hull, fill=k)
        hull_area.append(max(int(np.asarray(own).sum()), 1))
    visible = np.bincount(np.asarray(ids).ravel(), minlength=len(objects) + 1)
    velo_origin_rect = _velo_origin(calib)
    labels, points = [], [_ground_points(rng, calib)]
    for k, (name, dims, loc, ry, _, clipped, truncation) in enumerate(objects, start=1):
        seen = visible[k] / hull_area[k - 1]
        occluded = 0 if seen > 0.9 else 1 if seen > 0.5 else 2
        bbox = tuple(float(round(v, 2)) for v in clipped)
        far = loc[2] > 40.0
        if far:  # far objects are labelled DontCare, as in KITTI
            labels.append(kitti.dontcare(bbox))
        else:
            alpha = kitti.alpha_from_rotation(ry, loc[0], loc[2])
            labels.append(kitti.KittiObject(name, float(truncation), occluded, alpha, bbox, dims, loc, ry))
        corners = kitti.box3d_corners(dims, loc, ry)
        dist = float(np.linalg.norm(np.asarray(loc) - velo_origin_rect))
        n = int(np.clip(2500 * (8.0 / max(dist, 4.0)) ** 2, 20, 1500))
        pts = _object_points(rng, corners, velo_origin_rect, n)
        points.append(np.hstack([kitti.rect_to_velo(pts, calib), rng.uniform(0.2, 0.9, (len(pts), 1))]))
    labels.sort(key=lambda o: o.type == "DontCare")  # DontCare lines last, as in KITTI's own label files
    return image, labels, calib, np.concatenate(points).astype(np.float32)


def _hull(pix: np.ndarray) -> list[int]:
    """Indices of the convex hull of 2D points (monotone chain), counter-clockwise."""
    order = sorted(range(len(pix)), key=lambda i: (pix[i][0], pix[i][1]))

    def cross(o, a, b):
        return (pix[a][0] - pix[o][0]) * (pix[b][1] - pix[o][1]) - (pix[a][1] - pix[o][1]) * (pix[b][0] - pix[o][0])

    lower, upper = [], []
    for i in order:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], i) <= 0:
            lower.pop()
        lower.append(i)
    for i in reversed(order):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], i) <= 0:
            upper.pop()
        upper.append(i)
    return lower[:-1] + upper[:-1]


def _velo_origin(calib) -> np.ndarray:
    cam_from_velo = kitti.to_homogeneous(calib["R0_rect"]) @ kitti.to_homogeneous(calib["Tr_velo_to_cam"])
    return cam_from_velo[:3, 3]


def _ground_points(rng, calib, n: int = 6000) -> np.ndarray:
    r = np.sqrt(rng.uniform(3.0**2, 60.0**2, n))
    theta = rng.uniform(-math.pi, math.pi, n)
    rect = np.stack([r * np.sin(theta), CAMERA_HEIGHT + rng.normal(0, 0.02, n), r * np.cos(theta)], axis=1)
    return np.hstack([kitti.rect_to_velo(rect, calib), rng.uniform(0.0, 0.3, (n, 1))])


def _write_frame(args) -> None:
    root, seed, index, width, height, class_probs, palette = args
    image, labels, calib, points = render_frame(seed, index, width, height, class_probs, palette)
    name = f"{index:06d}"
    image.save(root / "image_2" / f"{name}.png", compress_level=3)
    kitti.write_label(root / "label_2" / f"{name}.txt", labels)
    kitti.write_calib(root / "calib" / f"{name}.txt", calib)
    points.tofile(root / "velodyne" / f"{name}.bin")


def synth_kitti(out: str | Path, frames: int, seed: int = 0, val_fraction: float = 0.2, workers: int | None = None,
                class_probs: dict[str, float] | None = None, palette: str = "class") -> Path:
    """Write ``frames`` synthetic frames as a KITTI object dataset under ``out/training``; ``class_probs`` (class ->
    weight, the others keep ``LOOKS``' weights) changes the class mix (bench/iterate_bench.py's rare class);
    ``palette="shared"`` draws every object in any class's colour (bench/models_bench.py: classes told apart by
    shape and size, data the tests never use).

    ``ImageSets/{train,val,trainval}.txt`` hold a split by frame index (every ``1/val_fraction``-th
    frame is val), as the official KITTI split files do. Returns ``out``.
    """
    if frames < 1:
        raise UsageError(f"frames must be >= 1, got {frames}")
    unknown = sorted(set(class_probs or {}) - set(LOOKS))
    if unknown:
        raise UsageError(f"class_probs: unknown class {unknown[0]!r}; expected some of {', '.join(LOOKS)}")
    if palette not in PALETTES:
        raise UsageError(f"palette {palette!r}: expected one of {', '.join(PALETTES)}")
    out = Path(out)
    with atomic_dir(out) as tmp:
        training = tmp / "training"
        for sub in ("image_2", "label_2", "calib", "velodyne"):
            (training / sub).mkdir(parents=True)
        jobs = [(training, seed, i, WIDTH, HEIGHT, class_probs, palette) for i in range(frames)]
        with Pool(workers) as pool:
            for _ in tqdm(pool.imap_unordered(_write_frame, jobs, chunksize=4), total=frames, desc="synth kitti", unit="frame"):
                pass
        step = max(int(round(1 / val_fraction)), 2) if val_fraction > 0 else 0
        val = [i for i in range(frames) if step and i % step == step - 1]
        train = [i for i in range(frames) if i not in set(val)]
        sets = tmp / "ImageSets"
        sets.mkdir()
        for name, ids in (("train", train), ("val", val), ("trainval", list(range(frames)))):
            (sets / f"{name}.txt").write_text("".join(f"{i:06d}\n" for i in ids))
    return out
