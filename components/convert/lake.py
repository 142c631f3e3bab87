"""Convert with the data lake: the source is a path or a committed ``NAME@VERSION``; both the source and
the converted dataset end up as immutable versions in the store, so every model traces back to them.
The COCO images are the source's images (hard links or copies), so the store keeps their content once:
the converted version's manifest points at the packs and objects of the source's images."""
from __future__ import annotations

from pathlib import Path

from admlops import catalog, refs
from admlops.components.convert.readers.kitti import kitti_frame_file
from admlops.components.convert.to_coco import (kitti_convert_shard, kitti_shard_frames, kitti_to_coco,
                                                 merge_convert_shards)
from admlops.objectstore import open_store

KITTI_ROLES = {"training/image_2/": "image", "training/label_2/": "label", "training/calib/": "calib",
               "training/velodyne/": "lidar", "ImageSets/": "split"}
COCO_ROLES = {"images/": "image", "annotations/": "label", "splits/": "split"}


def publish_source(store, path: Path, version: catalog.Version | None, roles: dict[str, str]) -> catalog.Version:
    """The source's dataset version: the one it was pulled as, or ``path`` pushed under its folder's name (a
    content-hashed version, so the same data is the same version however often it is published)."""
    return version or catalog.push(store, "datasets", path.resolve().name, path, roles=roles)


def convert_with_store(source: str, out: str | Path, definition: str, val_fraction: float, seed: int, store_uri: str = "",
                       shards: list[str | Path] | None = None) -> dict:
    """Convert KITTI ``source`` to COCO at ``out`` and publish both as dataset versions; returns the summary
    with ``source_version`` and ``dataset_version`` records (name, version, manifest sha256, URI). A source that
    is already a converted dataset (a version iterate's merge made, say) is taken as it is: source and dataset
    version are then the same. ``shards``: the outputs of ``convert_shard_with_store`` to merge, instead of
    converting here (the same bytes)."""
    store = open_store(store_uri)
    with refs.local_copy(store, "datasets", source) as (path, src_version):
        if is_converted(path):  # already a task dataset (e.g. iterate's merge): taken as it is
            summary = pass_through(path, out)
            converted = src_version = publish_source(store, path, src_version, COCO_ROLES)
        else:
            summary = kitti_to_coco(path, out, definition, val_fraction, seed) if shards is None else \
                merge_convert_shards(path, shards, out, definition, val_fraction, seed)
            src_version = publish_source(store, path, src_version, KITTI_ROLES)
            converted = None
    converted = converted or catalog.push(store, "datasets", f"{src_version.name}-coco-{summary['definition']}", out,
                                          roles=COCO_ROLES)
    summary["source_version"] = src_version.record(store)
    summary["dataset_version"] = converted.record(store)
    return summary


def dataset_metadata(summary: dict) -> dict:
    """A converted dataset artifact's metadata: what it holds and the versions it came from and was published as."""
    return {"format": "coco", "frames": summary["frames"], "categories": summary["categories"],
            "source": summary["source_version"], "version": summary["dataset_version"],
            "object_uri": summary["dataset_version"]["uri"]}


def convert_shard_with_store(source: str, out: str | Path, shard: int, shards: int, definition: str,
                             val_fraction: float, seed: int, store_uri: str = "") -> dict:
    """Shard ``shard`` of ``shards`` of ``source``'s conversion (``to_coco.kitti_convert_shard``); a source that is
    already converted has nothing to convert (an empty shard: the merge takes the source as it is)."""
    import json

    from admlops.localfs import atomic_dir

    def frames(root: Path) -> set:  # a version's images and scans: the shard's frames' only
        return set() if is_converted(root) else kitti_shard_frames(root, shard, shards, definition, val_fraction, seed)

    with refs.local_shard(store_uri, source, kitti_frame_file, frames) as (path, _):
        if not is_converted(path):
            return kitti_convert_shard(path, out, shard, shards, definition, val_fraction, seed)
    record = {"shard": shard, "shards": shards, "frames": 0, "converted": True}
    with atomic_dir(out) as tmp:
        (tmp / "shard.json").write_text(json.dumps(record))
    return record


def is_converted(path: Path) -> bool:
    """A dataset convert already wrote (annotations/{train,val}.json and summary.json), not a KITTI root."""
    return all((path / f).is_file() for f in ("annotations/train.json", "annotations/val.json", "summary.json"))


def pass_through(path: Path, out: str | Path) -> dict:
    """Publish a converted dataset unchanged at ``out``; its summary says what it holds."""
    import json
    import shutil

    from admlops.errors import InputError
    from admlops.localfs import atomic_dir

    summary = json.loads((path / "summary.json").read_text())
    for key in ("frames", "categories", "definition"):
        if key not in summary:
            raise InputError(path / "summary.json", f"missing {key!r}: not a dataset convert or iterate's merge wrote")
    with atomic_dir(out) as tmp:
        shutil.copytree(path, tmp, dirs_exist_ok=True)
    return summary
