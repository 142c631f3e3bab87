"""nuScenes v1.0 tables + samples/: one frame per keyframe camera image, boxes projected from 3D."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from admlops.components.convert.records import READERS, STRICT, Frame, Object, Skips
from admlops.dataset_formats import nuscenes as nus
from admlops.errors import InputError


@READERS.register("nuscenes")
def read_nuscenes(root: str | Path, version: str = "v1.0-trainval", cameras: tuple[str, ...] = nus.CAMERAS,
                  skips: Skips = STRICT) -> Iterator[Frame]:
    """One frame per keyframe image of each camera, in sample-table order. The 2D box of an annotation is its
    3D box projected and cut to the image (as mmdet3d's mono3d infos); the 3D box is kept in the camera frame
    in KITTI's convention (bottom centre, h w l, rotation about y); visibility and attribute ride along."""
    tables = nus.Tables(root, version)
    for name, exc in tables.unlinked:  # records of no sample: listed, never silently dropped
        skips.add(exc, name)
    for sample in tables.rows["sample"]:
        for cam in cameras:
            with skips.sample(f"{sample['token']}/{cam}"):
                tables.check(sample["token"])
                sd = tables.sample_data[sample["token"]].get(cam)
                if sd is None:
                    raise InputError(tables.dir / "sample_data.json", f"sample {sample['token']!r} has no {cam} keyframe")
                objects = []
                for o in nus.camera_objects(tables, sample, cam):
                    length, height, width = o["lhw"]
                    bottom = o["centre"] + (0.0, height / 2, 0.0)
                    box3d = {"dimensions": (height, width, length), "location": tuple(bottom.tolist()), "rotation_y": o["yaw"]}
                    attrs = {"visibility": o["visibility"], "attribute": o["attribute"], "num_lidar_pts": o["num_lidar_pts"]}
                    objects.append(Object(o["category"], tuple(o["bbox"]), attrs, box3d))
                scene = tables.follow("sample", sample, "scene_token", "scene")["name"]
                yield Frame(Path(sd["filename"]).stem, tables.path(sd), int(sd["width"]), int(sd["height"]), tuple(objects),
                            tables.dir / "sample_annotation.json", group=scene)
