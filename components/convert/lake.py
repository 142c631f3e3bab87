"""Convert with the data lake: the source is a path or a committed ``NAME@VERSION``; both the source and
the converted dataset end up as immutable versions in the store, so every model traces back to them."""
from __future__ import annotations

import tempfile
from pathlib import Path

from admlops import catalog
from admlops.components.convert.kitti_coco import kitti_to_coco
from admlops.objectstore import DEFAULT_STORE, open_store

KITTI_ROLES = {"training/image_2/": "image", "training/label_2/": "label", "training/calib/": "calib",
               "training/velodyne/": "lidar", "ImageSets/": "split"}
COCO_ROLES = {"images/": "image", "annotations/": "label", "splits/": "split"}


def convert_with_store(source: str, out: str | Path, definition: str, val_fraction: float, seed: int, store_uri: str = "") -> dict:
    """Convert KITTI ``source`` to COCO at ``out`` and publish both as dataset versions; returns the summary
    with ``source_version`` and ``dataset_version`` records (name, version, manifest sha256, URI)."""
    store = open_store(store_uri or DEFAULT_STORE)
    with tempfile.TemporaryDirectory(prefix="admlops-src-") as cache:
        path = Path(source)
        if "@" in source and not path.exists():
            name, version = source.split("@", 1)
            src_version = catalog.pull(store, "datasets", name, version, Path(cache) / "kitti")
            path = Path(cache) / "kitti"
            summary = kitti_to_coco(path, out, definition, val_fraction, seed)
        else:
            summary = kitti_to_coco(path, out, definition, val_fraction, seed)
            src_version = catalog.push(store, "datasets", path.resolve().name, path, roles=KITTI_ROLES)
    converted = catalog.push(store, "datasets", f"{src_version.name}-coco-{summary['definition']}", out, roles=COCO_ROLES)
    summary["source_version"] = _record(store, src_version)
    summary["dataset_version"] = _record(store, converted)
    return summary


def _record(store, v: catalog.Version) -> dict:
    return v.ref() | {"uri": store.uri(f"datasets/{v.name}/{v.version}/")}
