"""Merge imported labels into the parent dataset version: a new immutable dataset version with the new frames in
train, the parent's val split unchanged (so models trained on either stay comparable on the same val frames).

The result has convert's layout (``coco.write_coco``: annotations/{train,val}.json, images/, splits/,
summary.json, index.parquet), so it is a valid input of the detection2d pipeline; the parent's records are kept
as they are and the new frames are added by the COCO writer's own ``_add_frame`` (same ids, ignore regions,
index rows). New frame ids are ``<prefix>-<pool frame id>`` (the prefix defaults to the pool's name), as
``data merge`` names frames by their source.

The version is pushed to the store (kind ``datasets``, by default under the parent's name); its info.json
``lineage`` names the parent version (``Version.ref()``), the pool, the model, the selection (frame ids,
scores, reasons) and the labeling task (name, format, the returned file's sha256).
"""
from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path

from tqdm import tqdm

from admlops import catalog, refs
from admlops.components.convert.coco import SPLITS, _add_frame, write_index
from admlops.components.convert.lake import COCO_ROLES
from admlops.components.convert.records import Frame, Object
from admlops.definition import IGNORE, load_definition
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir, link_or_copy
from admlops.objectstore import ObjectStore, open_store
from admlops.zoo import code_version


def resolve_parent(store: ObjectStore, parent: str | Path, cache: Path) -> tuple[Path, catalog.Version]:
    """The parent dataset as a directory and its committed version: ``NAME@VERSION`` is pulled from ``store``
    (verified); a directory is pushed (content-addressed: an already stored dataset gets its existing version)."""
    path, version = refs.fetch(store, "datasets", parent, cache / "parent", directory=True)
    return path, version or catalog.push(store, "datasets", path.resolve().name, path, roles=COCO_ROLES)


def _check_ids(coco: dict, path: Path) -> None:
    """Every image and annotation id unique, as the COCO writer's contiguous ids keep them."""
    images = [im["id"] for s in SPLITS for im in coco[s]["images"]]
    if len(set(images)) != len(images):
        raise InputError(path, "image ids are not unique across train and val after merging: the parent dataset's ids "
                         "are not the COCO writer's contiguous 1..N")
    for s in SPLITS:
        anns = [a["id"] for a in coco[s]["annotations"]]
        if len(set(anns)) != len(anns):
            raise InputError(path / f"{s}.json", "annotation ids are not unique after merging")


def merge(labels: str | Path, parent: str | Path, out: str | Path, store: str = "", name: str | None = None,
          prefix: str | None = None) -> dict:
    """Add import's ``labels`` to ``parent`` (NAME@VERSION in ``store`` or a dataset directory) as train frames;
    publishes the dataset at ``out`` and pushes it as a version of ``name`` (default: the parent's name).
    Returns {dataset_version: ref + uri, summary, lineage}."""
    labels = Path(labels)
    if not (labels / "labels.json").is_file():
        raise InputError(labels / "labels.json", "not an import directory (import's output): labels.json is missing")
    task = json.loads((labels / "task.json").read_text())
    imported = json.loads((labels / "summary.json").read_text())
    frames = json.loads((labels / "labels.json").read_text())["frames"]
    pool = task.get("pool") or {}
    prefix = pool.get("name", "pool") if prefix is None else prefix
    st = open_store(store)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.parent-", dir=out.parent) as cache:
        parent_dir, parent_version = resolve_parent(st, parent, Path(cache))
        parent_summary = json.loads((parent_dir / "summary.json").read_text())
        defn = load_definition(parent_summary["definition"])
        if task["labels"] != [c.name for c in defn.categories] + [IGNORE]:
            raise UsageError(f"the task's labels {task['labels']} are not the parent dataset's categories "
                             f"{[c.name for c in defn.categories]} (+ {IGNORE}) ({parent_dir / 'summary.json'})")
        new_ids = [f"{prefix}-{f['frame']}" if prefix else f["frame"] for f in frames]
        summary = _write(parent_dir, parent_summary, defn, frames, new_ids, labels, task, imported, out)
    lineage = {
        "parent": parent_version.ref(), "pool": pool, "model": task.get("model"), "selection": task["selection"],
        "task": {"name": task["name"], "format": task["format"], "frames": len(frames), "returned": imported["returned"],
                 "objects": imported["objects"], "by_label": imported["by_label"]},
        "new_frames": dict(zip((f["frame"] for f in frames), new_ids, strict=True)), "code_version": code_version(),
    }
    version = catalog.push(st, "datasets", name or parent_version.name, out, roles=COCO_ROLES, extra={"lineage": lineage})
    return {"dataset_version": version.record(st), "summary": summary, "lineage": lineage}


def _write(parent_dir: Path, parent_summary: dict, defn, frames: list[dict], new_ids: list[str], labels: Path,
           task: dict, imported: dict, out: Path) -> dict:
    """The parent's files with the new frames added to train, at ``out`` (atomically); returns the new summary."""
    import pyarrow.parquet as pq

    coco = {s: json.loads((parent_dir / "annotations" / f"{s}.json").read_text()) for s in SPLITS}
    counts = copy.deepcopy(parent_summary["objects"])
    index = pq.read_table(parent_dir / "index.parquet").to_pylist()
    names = {im["file_name"]: parent_dir / im["file_name"] for s in SPLITS for im in coco[s]["images"]}
    mapping = {c.name: c.name for c in defn.categories} | {IGNORE: IGNORE}
    cat_ids = {c.name: c.id for c in defn.categories}
    returned = labels / imported["returned"]["file"]  # object lines refer to the returned file, kept in ``labels``
    with atomic_dir(out) as tmp:
        for sub in ("images", "annotations", "splits"):
            (tmp / sub).mkdir()
        for file_name, src in tqdm(names.items(), desc="link parent images", unit="image", leave=False):
            link_or_copy(src, tmp / file_name)
        for f, fid in zip(frames, new_ids, strict=True):
            objects = tuple(Object(o["label"], tuple(o["bbox"]), o["attributes"], line=o.get("line")) for o in f["objects"])
            frame = Frame(fid, labels / "images" / f["file"], f["width"], f["height"], objects, returned)
            _add_frame(frame, "train", coco, counts, index, names, tmp, defn, mapping, cat_ids)
        _check_ids(coco, tmp / "annotations")
        for s in SPLITS:
            (tmp / "annotations" / f"{s}.json").write_text(json.dumps(coco[s]))
            (tmp / "splits" / f"{s}.txt").write_text("".join(f"{Path(im['file_name']).stem}\n" for im in coco[s]["images"]))
        summary = dict(parent_summary, frames={s: len(coco[s]["images"]) for s in SPLITS}, objects=counts,
                       iterations=parent_summary.get("iterations", []) + [{
                           "parent_frames": parent_summary["frames"], "added_to": "train", "frames": new_ids,
                           "task": task["name"], "format": task["format"], "returned_sha256": imported["returned"]["sha256"]}])
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        write_index(index, tmp / "index.parquet")
    return summary
