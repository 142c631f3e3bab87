"""KITTI object: ``training/{image_2,label_2,calib,velodyne}`` (devkit_object readme); also the frame list and the
split files that convert and infos read."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator

from admlops.components.convert.lidar import kitti_lidar, kitti_scan
from admlops.components.convert.records import READERS, STRICT, Frame, Object, Skips, image_size
from admlops.dataset_formats import kitti
from admlops.errors import InputError


def kitti_frames(root: str | Path) -> tuple[Path, list[str]]:
    """``root/training`` and its frame ids (label file stems, sorted); an error when it is not KITTI."""
    training = Path(root) / "training"
    for sub in ("label_2", "image_2"):
        if not (training / sub).is_dir():
            raise InputError(training / sub, "not a KITTI object dataset: directory missing")
    frames = sorted(p.stem for p in (training / "label_2").glob("*.txt"))
    if not frames:
        raise InputError(training / "label_2", "no label files (*.txt)")
    return training, frames


# a frame's large files (labels, calibration and planes are small); testing/image_2 is not one: its files are how
# the test frames are listed (as training's by label_2), so they are needed to plan the shards
FRAME_FOLDERS = {"training": ("image_2", "image_3", "velodyne"), "testing": ("image_3", "velodyne")}


def kitti_frame_file(path: str) -> tuple[str, str] | None:
    """(``training`` or ``testing``, frame id) of a KITTI image or scan (``training/velodyne/000042.bin``): the
    large files a shard needs of its own frames only (``refs.local_shard``); None for any other file."""
    parts = path.split("/")
    if len(parts) == 3 and parts[1] in FRAME_FOLDERS.get(parts[0], ()):
        return parts[0], parts[2].rpartition(".")[0] or parts[2]
    return None


def kitti_split_ids(path: Path, frames: set[str], skips: Skips, missing: str = "has no label in training/label_2",
                    sample: Callable[[str], str] = str, check: Callable[[str], str | None] | None = None) -> list[str]:
    """The frame ids a KITTI split file lists (``ImageSets/<split>.txt``: whitespace-separated, one a line), in order.

    An id not in ``frames`` (the frames that have their files, e.g. the label file stems) is a bad sample named
    with the split file and its line, ``frame '000042' <missing>``, not by a file of it that does not exist; so is
    one ``check`` returns a message for (checked first). ``sample(id)`` is its name in skipped.json."""
    ids = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        for frame in line.split():
            with skips.sample(sample(frame)):
                problem = check(frame) if check else None
                if problem is None and frame not in frames:
                    problem = f"frame {frame!r} {missing}"
                if problem is not None:
                    raise InputError(path, problem, lineno)
                ids.append(frame)
    return ids


@READERS.register("kitti")
def read_kitti(root: str | Path, skips: Skips = STRICT) -> Iterator[Frame]:
    """Every labelled frame of ``root/training``; the layout fixes where images are, so it takes no options."""
    training, frames = kitti_frames(root)
    for frame in frames:
        with skips.sample(frame):
            yield read_kitti_frame(training, frame)


def read_kitti_frame(training: Path, frame: str, classes: tuple[str, ...] = kitti.CLASSES, labels: bool = True,
                     count_points: bool = True) -> Frame:
    """One frame of ``training/`` (or, with ``labels=False``, of KITTI's unlabelled ``testing/``); with
    ``count_points`` each 3D box gets ``num_lidar_pts`` from the scan (when calib and velodyne exist)."""
    label = training / "label_2" / f"{frame}.txt"
    image = training / "image_2" / f"{frame}.png"
    width, height = image_size(image, label if labels else image)
    objects = []
    for lineno, o in kitti.read_label_lines(label, classes) if labels else ():
        box3d = None if o.type == "DontCare" else {"dimensions": o.dimensions, "location": o.location, "rotation_y": o.rotation_y}
        attrs = {} if o.type == "DontCare" else {"truncated": o.truncated, "occluded": o.occluded, "alpha": o.alpha}
        objects.append(Object(o.type, o.bbox, attrs, box3d, lineno))
    calib_file, lidar = training / "calib" / f"{frame}.txt", training / "velodyne" / f"{frame}.bin"
    calib = kitti.read_calib(calib_file) if calib_file.is_file() else None
    if count_points and calib is not None and lidar.is_file() and objects:  # LiDAR points per 3D box, as mmdet3d counts
        with_3d = [i for i, o in enumerate(objects) if o.box3d is not None]
        counts = kitti_lidar(kitti_scan(lidar), calib, width, height, [objects[i] for i in with_3d])[2].sum(0)
        for i, n in zip(with_3d, counts, strict=True):
            objects[i] = dataclasses.replace(objects[i], attributes={**objects[i].attributes, "num_lidar_pts": int(n)})
    return Frame(frame, image, width, height, tuple(objects), label, calib, lidar if lidar.is_file() else None)
