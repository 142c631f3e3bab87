import hashlib

import numpy as np
import pytest
from PIL import Image

from admlops.components.synth.kitti import LOOKS, synth_kitti
from admlops.dataset_formats import kitti


def _digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_layout(kitti_root):
    training = kitti_root / "training"
    for sub, ext in (("image_2", "png"), ("label_2", "txt"), ("calib", "txt"), ("velodyne", "bin")):
        assert len(list((training / sub).glob(f"*.{ext}"))) == 20
    train = (kitti_root / "ImageSets" / "train.txt").read_text().split()
    val = (kitti_root / "ImageSets" / "val.txt").read_text().split()
    assert len(train) + len(val) == 20 and not set(train) & set(val) and val
    with Image.open(training / "image_2" / "000000.png") as im:
        assert im.size == (1242, 375) and im.mode == "RGB"


def test_deterministic_by_seed(tmp_path, kitti_root):
    a = synth_kitti(tmp_path / "a", frames=3, seed=7, workers=1)
    b = synth_kitti(tmp_path / "b", frames=3, seed=7, workers=2)
    c = synth_kitti(tmp_path / "c", frames=3, seed=8, workers=1)
    assert _digest(a / "training") == _digest(b / "training") != _digest(c / "training")
    # frame i depends only on (seed, i): the same bytes as in the 20-frame set
    for sub in ("image_2/000002.png", "label_2/000002.txt", "velodyne/000002.bin"):
        assert (a / "training" / sub).read_bytes() == (kitti_root / "training" / sub).read_bytes()


def test_all_fields_and_classes(kitti_root):
    seen = set()
    for path in sorted((kitti_root / "training" / "label_2").glob("*.txt")):
        for line in path.read_text().splitlines():
            assert len(line.split()) == 15
        seen |= {o.type for o in kitti.read_label(path)}
        calib = kitti.read_calib(kitti_root / "training" / "calib" / path.name)
        assert set(calib) == set(kitti.CALIB_SHAPES)
    assert seen == {"Car", "Pedestrian", "Cyclist", "Van", "Truck", "DontCare"}


def test_projected_3d_boxes_match_2d_boxes(kitti_root):
    checked = 0
    for path in sorted((kitti_root / "training" / "label_2").glob("*.txt")):
        calib = kitti.read_calib(kitti_root / "training" / "calib" / path.name)
        for obj in kitti.read_label(path):
            if obj.type == "DontCare":
                continue
            pix = kitti.project(calib["P2"], kitti.box3d_corners(obj.dimensions, obj.location, obj.rotation_y))
            box = (max(pix[:, 0].min(), 0), max(pix[:, 1].min(), 0), min(pix[:, 0].max(), 1241), min(pix[:, 1].max(), 374))
            # 2D boxes are written with 2 decimals
            np.testing.assert_allclose(obj.bbox, box, atol=0.01)
            assert obj.alpha == kitti.alpha_from_rotation(obj.rotation_y, obj.location[0], obj.location[2]) or abs(
                obj.alpha - kitti.alpha_from_rotation(obj.rotation_y, obj.location[0], obj.location[2])
            ) < 0.01
            checked += 1
    assert checked > 50


def _velo_to_rect(points, calib):
    m = kitti.to_homogeneous(calib["R0_rect"]) @ kitti.to_homogeneous(calib["Tr_velo_to_cam"])
    return (np.hstack([points, np.ones((len(points), 1))]) @ m.T)[:, :3]


def test_lidar_points_lie_on_ground_and_boxes(kitti_root):
    for frame in ("000000", "000005"):
        calib = kitti.read_calib(kitti_root / "training" / "calib" / f"{frame}.txt")
        pts = np.fromfile(kitti_root / "training" / "velodyne" / f"{frame}.bin", dtype=np.float32).reshape(-1, 4)
        assert 0 <= pts[:, 3].min() and pts[:, 3].max() <= 1
        rect = _velo_to_rect(pts[:, :3].astype(np.float64), calib)
        on_ground = np.abs(rect[:, 1] - 1.65) < 0.1
        in_box = np.zeros(len(rect), bool)
        objects = [o for o in kitti.read_label(kitti_root / "training" / "label_2" / f"{frame}.txt") if o.type != "DontCare"]
        for obj in objects:
            h, w, l = obj.dimensions
            c, s = np.cos(obj.rotation_y), np.sin(obj.rotation_y)
            local = rect - np.asarray(obj.location)
            tol = 0.05  # 2D boxes are written with 2 decimals
            x = c * local[:, 0] - s * local[:, 2]  # rotate into the box frame
            z = s * local[:, 0] + c * local[:, 2]
            inside = (np.abs(x) <= l / 2 + tol) & (np.abs(z) <= w / 2 + tol) & (local[:, 1] <= tol) & (local[:, 1] >= -h - tol)
            assert inside.sum() >= 20, f"{frame}: no LiDAR points on the {obj.type} at {obj.location}"
            in_box |= inside
        # every point is ground or on an object box (DontCare objects are boxes too, far away)
        far = np.linalg.norm(rect[:, [0, 2]], axis=1) > 39
        assert (on_ground | in_box | far).mean() > 0.999


def test_classes_look_different(kitti_root):
    colours = {name: [] for name in LOOKS}
    for path in sorted((kitti_root / "training" / "label_2").glob("*.txt")):
        img = np.asarray(Image.open(kitti_root / "training" / "image_2" / f"{path.stem}.png"), dtype=float)
        for obj in kitti.read_label(path):
            if obj.type in colours and obj.occluded == 0 and obj.truncated == 0:
                l, t, r, b = (int(v) for v in obj.bbox)
                colours[obj.type].append(img[t:b, l:r].reshape(-1, 3).mean(axis=0))
    means = {k: np.mean(v, axis=0) for k, v in colours.items() if v}
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(means[a] - means[b]).max() > 20, (a, b, means[a], means[b])


def test_a_shared_palette_paints_the_same_objects_in_any_class_colour(tmp_path):
    """palette='shared' (bench/models_bench.py's unseen appearance) keeps the scene and labels and repaints the
    objects: a Car then shows in colours other than its class's red."""
    from admlops.components.synth.kitti import render_frame
    from admlops.errors import UsageError

    cars_red = {"class": [], "shared": []}
    for index in range(6):
        frames = {p: render_frame(5, index, palette=p) for p in ("class", "shared")}
        assert frames["class"][1] == frames["shared"][1]  # the same labels
        img = {p: np.asarray(f[0]).astype(int) for p, f in frames.items()}
        for obj in frames["class"][1]:
            if obj.type == "Car" and obj.occluded == 0:
                x0, y0, x1, y1 = (int(v) for v in obj.bbox)
                for p in img:
                    patch = img[p][y0:y1, x0:x1].reshape(-1, 3)
                    cars_red[p].append(np.mean(patch[:, 0] - patch[:, 1:].mean(axis=1)) > 40)
    assert all(cars_red["class"]) and not all(cars_red["shared"]), cars_red
    assert LOOKS["Car"].color[0] > 200
    with pytest.raises(UsageError, match="palette 'grey'"):
        synth_kitti(tmp_path / "x", 1, palette="grey")
