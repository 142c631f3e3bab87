"""The infos step: a KITTI- or nuScenes-format source (a path, or a dataset version ``NAME@VERSION`` of the store)
-> the mmdet3d data root its 3D configs train on (``kitti.write_kitti_infos``, ``nuscenes.write_nuscenes_infos``
beside this module), as one self-contained directory.

The writers link the source's folders into the data root (``training/velodyne``, ``samples``, ...); a pipeline
artifact must hold its files (a cluster uploads it, and a pulled source is gone after the step), so the links
become hard links (copies across filesystems). The source is published as a dataset version after the data
root is written (a source that fails is not published), and ``infos.json`` records it: the lineage of every
model trained on the data root.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir, link_or_copy

NUSCENES_ROLES = {"samples/": "sensor", "sweeps/": "sensor", "maps/": "map", "v1.0-": "label"}
SOURCE_FORMATS = ("kitti", "nuscenes")  # the dataset formats a data root is written from


def _roles(data_format: str) -> dict[str, str]:
    from admlops.components.convert.lake import KITTI_ROLES

    return KITTI_ROLES if data_format == "kitti" else NUSCENES_ROLES


def check_format(data_format: str) -> None:
    if data_format not in SOURCE_FORMATS:
        raise UsageError(f"data_format {data_format!r}: expected one of {', '.join(SOURCE_FORMATS)}")


def check_source(source: str, data_format: str = "kitti") -> None:
    """Before a run: a local KITTI source is a KITTI object dataset with what 3D detection reads (calibration and
    Velodyne scans besides labels and images). A ``NAME@VERSION`` or a nuScenes source is checked by its step."""
    from admlops.components.convert.readers import kitti_frames

    from admlops.refs import is_reference

    check_format(data_format)
    path = Path(source)
    if data_format != "kitti" or is_reference(source):
        return
    training, _ = kitti_frames(path)
    for sub, what in (("calib", "calibration files"), ("velodyne", "Velodyne scans (*.bin)")):
        if not (training / sub).is_dir():
            raise InputError(training / sub, f"directory missing: 3D detection reads the {what}")


def materialize_links(root: Path) -> int:
    """Replace every symbolic link under ``root`` by what it points at (hard links or copies); returns how many."""
    links = [Path(d) / n for d, dirs, files in os.walk(root) for n in dirs + files if (Path(d) / n).is_symlink()]
    for link in links:
        target = link.resolve()
        link.unlink()
        if target.is_dir():
            shutil.copytree(target, link, copy_function=link_or_copy)
        else:
            link_or_copy(target, link)
    return len(links)


def write_infos(source: str, out: str | Path, data_format: str = "kitti", store_uri: str = "",
                nuscenes_version: str = "v1.0-trainval", max_sweeps: int = 10, workers: int | None = None) -> dict:
    """Write the mmdet3d data root of ``source`` at ``out`` (atomically) and publish the source; returns
    ``out/infos.json``'s record: format, frames per infos file and the source's ``source_version``."""
    from admlops import refs
    from admlops.objectstore import open_store

    check_format(data_format)
    store = open_store(store_uri)
    with refs.local_copy(store, "datasets", source) as (path, version), atomic_dir(out) as tmp:
        if data_format == "kitti":
            from admlops.components.infos.kitti import write_kitti_infos

            frames = write_kitti_infos(path, tmp, workers=workers)
        else:
            from admlops.components.infos.nuscenes import write_nuscenes_infos

            frames = write_nuscenes_infos(path, tmp, nuscenes_version, max_sweeps=max_sweeps, workers=workers)
        return _finish(store, path, version, tmp, data_format, frames)


def _finish(store, path: Path, version, tmp: Path, data_format: str, frames: dict) -> dict:
    """A written data root made self-contained, its source published, ``infos.json`` written; the record."""
    from admlops.components.convert.lake import publish_source

    materialize_links(tmp)
    version = publish_source(store, path, version, _roles(data_format))
    summary = {"format": data_format, "frames": frames, "source_version": version.record(store)}
    (tmp / "infos.json").write_text(json.dumps(summary, indent=2))
    return summary


def shards_of(data_format: str, shards: int) -> list[int]:
    """The shard indices a source is converted in: ``shards`` contiguous ranges of its frames (KITTI) or samples
    (nuScenes) in dataset order."""
    check_format(data_format)
    if shards < 1:
        raise UsageError(f"shards {shards}: expected at least 1")
    return list(range(shards))


def write_infos_shard(source: str, out: str | Path, shard: int, shards: int, data_format: str = "kitti",
                      store_uri: str = "", nuscenes_version: str = "v1.0-trainval", max_sweeps: int = 10) -> dict:
    """Shard ``shard`` of ``shards`` of the data root at ``out`` (``kitti.write_kitti_shard``,
    ``nuscenes.write_nuscenes_shard``); its record. From a dataset version, a shard pulls the labels, tables,
    calibration and split lists whole and the sensor files of its own frames only (``refs.local_shard``): a KITTI
    frame's scan and images, a nuScenes sample's keyframes and the LiDAR sweeps before it."""
    from admlops import refs

    if shard not in shards_of(data_format, shards):
        raise UsageError(f"shard {shard} of {shards}: expected 0 <= shard < shards")
    if data_format == "kitti":
        from admlops.components.convert.readers.kitti import kitti_frame_file
        from admlops.components.infos.kitti import shard_frames, write_kitti_shard

        with refs.local_shard(store_uri, source, kitti_frame_file, lambda root: shard_frames(root, shard, shards)) as (path, _):
            return write_kitti_shard(path, out, shard, shards)
    from admlops.components.infos.nuscenes import sensor_file, shard_files, write_nuscenes_shard

    def files(root: Path) -> set[str]:
        return shard_files(root, shard, shards, nuscenes_version, max_sweeps)

    with refs.local_shard(store_uri, source, sensor_file, files) as (path, _):
        return write_nuscenes_shard(path, out, shard, shards, nuscenes_version, max_sweeps=max_sweeps)


def merge_infos_shards(source: str, shards: list[str | Path], out: str | Path, data_format: str = "kitti",
                       store_uri: str = "", nuscenes_version: str = "v1.0-trainval") -> dict:
    """The data root at ``out`` from ``write_infos_shard``'s outputs (any order): byte for byte what ``write_infos``
    writes in one process; the source published; ``infos.json``'s record."""
    from admlops import refs
    from admlops.objectstore import open_store

    check_format(data_format)
    store = open_store(store_uri)
    with refs.local_copy(store, "datasets", source) as (path, version), atomic_dir(out) as tmp:
        if data_format == "kitti":
            from admlops.components.infos.kitti import merge_kitti_shards

            frames = merge_kitti_shards(path, shards, tmp)
        else:
            from admlops.components.infos.nuscenes import merge_nuscenes_shards

            frames = merge_nuscenes_shards(path, shards, tmp, nuscenes_version)
        return _finish(store, path, version, tmp, data_format, frames)
