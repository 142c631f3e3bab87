"""Pointing an mmengine detection config at a dataset directory, whichever kind the directory is:

* a converted dataset (convert's ``Dataset`` artifact: ``summary.json``, ``annotations/<split>.json``), for
  mmdet configs (``CocoDataset``);
* an mmdet3d KITTI data root (``admlops data infos``: ``kitti_infos_<split>.pkl``, ``training/velodyne_reduced``,
  ``kitti_gt_database/`` + ``kitti_dbinfos_train.pkl``), for mmdet3d configs (``KittiDataset``).

The kind comes from the directory's content and must be the kind of dataset the config reads. A KITTI data root
is checked before training starts (classes, GT database, scan sizes), so bad input is an InputError that names
the file, not a failure deep inside mmdet3d's data pipeline.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

from admlops.errors import InputError

KITTI_DATASET = "KittiDataset"


def kitti_infos(root: str | Path, split: str) -> Path:
    return Path(root) / f"kitti_infos_{split}.pkl"


def is_kitti_root(dataset_dir: str | Path) -> bool:
    """Whether ``dataset_dir`` is an mmdet3d KITTI data root (it has ``kitti_infos_train.pkl``)."""
    return kitti_infos(dataset_dir, "train").is_file()


def _inner(dataset_cfg):
    """The dataset under any wrappers (RepeatDataset, ClassBalancedDataset, ...)."""
    while "dataset" in dataset_cfg:
        dataset_cfg = dataset_cfg.dataset
    return dataset_cfg


def dataset_type(cfg) -> str:
    """The type of the dataset the config tests on, e.g. ``CocoDataset`` or ``KittiDataset``."""
    return _inner(cfg.test_dataloader.dataset).type


def config_classes(cfg) -> tuple[str, ...]:
    """The classes the config trains, in label order."""
    return tuple(_inner(cfg.train_dataloader.dataset).metainfo["classes"])


def dataset_meta(dataset_dir: str | Path, cfg=None) -> dict:
    """``classes`` (and for a converted dataset its ``palette``) in label order: a converted dataset's own
    categories; for a KITTI data root, which holds every KITTI category, the ones ``cfg`` trains."""
    if is_kitti_root(dataset_dir):
        if cfg is None:
            raise ValueError("a KITTI data root's classes are the config's: pass cfg")
        return {"classes": config_classes(cfg)}
    summary = json.loads((Path(dataset_dir) / "summary.json").read_text())
    return {"classes": tuple(summary["categories"]), "palette": [tuple(c) for c in summary["palette"]]}


def use_dataset(cfg, dataset_dir: str | Path, eval_split: str = "val") -> None:
    """Point ``cfg`` in place at ``dataset_dir``: training reads its train split, validation and test its
    ``eval_split``. An InputError when the directory is not the kind of dataset the config reads."""
    root = Path(dataset_dir).resolve()
    wants_kitti = dataset_type(cfg) == KITTI_DATASET
    if is_kitti_root(root):
        if not wants_kitti:
            raise InputError(root, f"an mmdet3d KITTI data root, but the config reads {dataset_type(cfg)}: "
                                   "train a 3D config on it (e.g. --config pointpillars_kitti_cpu)")
        _use_kitti_root(cfg, root, eval_split)
        return
    if wants_kitti:
        raise InputError(kitti_infos(root, "train"), "missing: the config reads an mmdet3d KITTI data root "
                         "(`admlops data infos SRC OUT --from kitti` writes one)")
    if not (root / "summary.json").is_file():
        raise InputError(root / "summary.json", "missing: not a converted dataset (`admlops data convert`)")
    _use_coco_dataset(cfg, root, eval_split)


def _use_coco_dataset(cfg, root: Path, eval_split: str) -> None:
    """Data roots, annotation files, classes and num_classes of an mmdet config: training reads
    ``annotations/train.json``; validation and test read ``annotations/<eval_split>.json``."""
    meta = dataset_meta(root)
    cfg.model.bbox_head.num_classes = len(meta["classes"])
    for name, split in (("train_dataloader", "train"), ("val_dataloader", eval_split), ("test_dataloader", eval_split)):
        ds = cfg[name].dataset
        ds.data_root = str(root)
        ds.ann_file = f"annotations/{split}.json"
        ds.metainfo = dict(classes=meta["classes"], palette=meta["palette"])
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = str(root / "annotations" / f"{eval_split}.json")


def _use_kitti_root(cfg, root: Path, eval_split: str) -> None:
    """Data root and infos of an mmdet3d config's datasets and KittiMetric, and the GT-database paths of its
    ObjectSample augmentation, with the ground plane used when every train frame has one (infos written from
    KITTI's training/planes carry a ``plane``). The config's classes stay the config's."""
    classes, config = config_classes(cfg), cfg.filename or "the model config"
    splits = {"train": check_kitti_infos(kitti_infos(root, "train"), classes, config)}
    splits[eval_split] = splits.get(eval_split) or check_kitti_infos(kitti_infos(root, eval_split), classes, config)
    for name, split in (("train_dataloader", "train"), ("val_dataloader", eval_split), ("test_dataloader", eval_split)):
        ds = _inner(cfg[name].dataset)
        ds.data_root = str(root)
        ds.ann_file = kitti_infos(root, split).name
        check_scans(root / ds.data_prefix["pts"], splits[split]["data_list"])
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = str(kitti_infos(root, eval_split))
    for transform in _inner(cfg.train_dataloader.dataset).pipeline:
        if transform["type"] == "ObjectSample":
            sampler = transform["db_sampler"]
            sampler.data_root = str(root)
            sampler.info_path = str(root / "kitti_dbinfos_train.pkl")
            check_gt_database(root, sampler.info_path, sampler.classes, 4 * sampler.points_loader.get("load_dim", 4))
            frames = splits["train"]["data_list"]
            transform["use_ground_plane"] = bool(frames) and all("plane" in info for info in frames)


def check_kitti_infos(path: Path, classes: tuple[str, ...], config: str) -> dict:
    """Load a KITTI infos file and check it can serve ``classes``: labels in the infos are indices into their
    ``metainfo.categories``, which mmdet3d's KittiDataset reads in its own fixed class order, and KittiMetric
    names every ground-truth label, DontCare's -1 included, through the same categories."""
    from mmdet3d.datasets import KittiDataset

    if not path.is_file():
        raise InputError(path, "missing infos file (`admlops data infos` writes train, val, trainval and test)")
    try:
        infos = pickle.loads(path.read_bytes())
        categories, frames = dict(infos["metainfo"]["categories"]), infos["data_list"]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(path, f"not an mmdet3d v2 infos file (metainfo.categories + data_list): {exc!r}") from exc
    known = KittiDataset.METAINFO["classes"]
    if unknown := [c for c in classes if c not in known]:
        raise InputError(config, f"classes {unknown} are not KITTI classes (KittiDataset knows {', '.join(known)})")
    if missing := [c for c in classes if c not in categories]:
        raise InputError(path, f"the config's classes {missing} are not among the infos' categories "
                               f"{sorted(categories)}: the infos were written for other classes")
    if moved := {c: i for c, i in categories.items() if c in known and i != known.index(c)}:
        raise InputError(path, f"category ids {moved} differ from KittiDataset's order {known}: labels would be read "
                               "as the wrong classes")
    labels = {inst["bbox_label"] for info in frames for inst in info.get("instances", ())}
    if unnamed := labels - set(categories.values()):
        raise InputError(path, f"instance labels {sorted(unnamed)} have no category (DontCare regions need "
                               "'DontCare': -1 in metainfo.categories; KittiMetric names ground truth through it)")
    return infos


def check_scans(folder: Path, frames: list[dict]) -> None:
    """Every frame's scan exists and is whole: its size a multiple of one point (num_pts_feats float32)."""
    for info in frames:
        points = info["lidar_points"]
        _check_points_file(folder / points["lidar_path"], 4 * points.get("num_pts_feats", 4), "LiDAR scan")


def check_gt_database(root: Path, info_path: str, classes, point_bytes: int) -> None:
    """The GT database that ObjectSample pastes objects from: its infos, an object of every class it samples,
    and every object's points file."""
    path = Path(info_path)
    if not path.is_file():
        raise InputError(path, "missing GT-database infos: the config's ObjectSample augmentation pastes objects "
                               "from the GT database (`admlops data infos` writes it with the data root)")
    db = pickle.loads(path.read_bytes())
    if empty := [c for c in classes if not db.get(c)]:
        raise InputError(path, f"no {', '.join(empty)} objects in the GT database, which ObjectSample samples")
    for name in classes:
        for entry in db[name]:
            _check_points_file(root / entry["path"], point_bytes, "GT-database object")


def _check_points_file(path: Path, point_bytes: int, what: str) -> None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, f"missing {what} (named in the data root's infos)") from None
    if size % point_bytes:
        raise InputError(path, f"{what} of {size} bytes is not a whole number of points "
                               f"({point_bytes} bytes each: {point_bytes // 4} float32)")
