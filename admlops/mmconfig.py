"""Pointing an mmengine detection config at a dataset directory, whichever kind the directory is:

* a converted dataset (convert's ``Dataset`` artifact: ``summary.json``, ``annotations/<split>.json``), for
  mmdet configs (``CocoDataset``);
* an mmdet3d KITTI data root (``admlops data infos --from kitti``: ``kitti_infos_<split>.pkl``,
  ``training/velodyne_reduced``, ``kitti_gt_database/`` + ``kitti_dbinfos_train.pkl``), for mmdet3d configs
  (``KittiDataset``);
* an mmdet3d nuScenes data root (``admlops data infos --from nuscenes``: ``nuscenes_infos_<split>.pkl``,
  ``samples/``, ``sweeps/``, the devkit tables ``v1.0-*/``, ``nuscenes_gt_database/`` +
  ``nuscenes_dbinfos_train.pkl``), for mmdet3d configs (``NuScenesDataset``, LiDAR or camera).

The kind comes from the directory's content and must be the kind of dataset the config reads. An mmdet3d data root
is checked before training starts (classes, GT database, the scans, sweeps and images the pipelines load), so bad
input is an InputError that names the file, not a failure deep inside mmdet3d's data pipeline.

``--cfg-options`` (train and evaluate, as mmdet's tools/train.py and tools/test.py take them) are parsed and merged
here too, each checked against the config.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

from admlops.errors import InputError, UsageError

KITTI_DATASET = "KittiDataset"
NUSCENES_DATASET = "NuScenesDataset"


@dataclass(frozen=True)
class DataRoot:
    """A kind of mmdet3d data root: the dataset class that reads it, its name, its files' prefix and the
    ``admlops data infos --from`` source that writes it."""

    dataset: str
    name: str
    prefix: str

    def infos(self, root: str | Path, split: str) -> Path:
        return Path(root) / f"{self.prefix}_infos_{split}.pkl"

    def db_infos(self, root: str | Path) -> Path:
        return Path(root) / f"{self.prefix}_dbinfos_train.pkl"


KITTI, NUSCENES = DataRoot(KITTI_DATASET, "KITTI", "kitti"), DataRoot(NUSCENES_DATASET, "nuScenes", "nuscenes")
DATA_ROOTS = (KITTI, NUSCENES)


def kitti_infos(root: str | Path, split: str) -> Path:
    return KITTI.infos(root, split)


def data_root_kind(dataset_dir: str | Path) -> DataRoot | None:
    """The kind of mmdet3d data root ``dataset_dir`` is (it has ``<prefix>_infos_train.pkl``), or None."""
    return next((kind for kind in DATA_ROOTS if kind.infos(dataset_dir, "train").is_file()), None)


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
    categories; for an mmdet3d data root, which holds every category of its dataset, the ones ``cfg`` trains."""
    if data_root_kind(dataset_dir):
        if cfg is None:
            raise ValueError("an mmdet3d data root's classes are the config's: pass cfg")
        return {"classes": config_classes(cfg)}
    summary = json.loads((Path(dataset_dir) / "summary.json").read_text())
    return {"classes": tuple(summary["categories"]), "palette": [tuple(c) for c in summary["palette"]]}


def import_mmext(cfg) -> None:
    """Make ``cfg`` import the product's own OpenMMLab modules (admlops/mmext) wherever it is loaded."""
    imports = list((cfg.get("custom_imports") or {}).get("imports", []))
    cfg.custom_imports = dict(imports=imports + ["admlops.mmext"] * ("admlops.mmext" not in imports),
                              allow_failed_imports=False)


def use_dataset(cfg, dataset_dir: str | Path, eval_split: str = "val") -> None:
    """Point ``cfg`` in place at ``dataset_dir``: training reads its train split, validation and test its
    ``eval_split``. An InputError when the directory is not the kind of dataset the config reads."""
    root = Path(dataset_dir).resolve()
    wants = dataset_type(cfg)
    if kind := data_root_kind(root):
        if wants != kind.dataset:
            raise InputError(root, f"an mmdet3d {kind.name} data root, but the config reads {wants}: train a "
                                   f"{kind.name} 3D config on it (e.g. --config {_example_config(kind)})")
        (_use_kitti_root if kind == KITTI else _use_nuscenes_root)(cfg, root, eval_split)
        return
    if wanted := next((k for k in DATA_ROOTS if k.dataset == wants), None):
        raise InputError(wanted.infos(root, "train"), f"missing: the config reads an mmdet3d {wanted.name} data root "
                         f"(`admlops data infos SRC OUT --from {wanted.prefix}` writes one)")
    if not (root / "summary.json").is_file():
        raise InputError(root / "summary.json", "missing: not a converted dataset (`admlops data convert`)")
    _use_coco_dataset(cfg, root, eval_split)


def _example_config(kind: DataRoot) -> str:
    return {KITTI: "pointpillars_kitti_cpu", NUSCENES: "centerpoint_pillar_nuscenes_cpu"}[kind]


def set_num_classes(node, n: int) -> None:
    """Every ``num_classes`` under a model config set to ``n`` (a two-stage detector has them nested:
    ``roi_head.bbox_head.num_classes``; a one-stage one in ``bbox_head``)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = n
            else:
                set_num_classes(value, n)
    elif isinstance(node, (list, tuple)):
        for item in node:
            set_num_classes(item, n)


def _use_coco_dataset(cfg, root: Path, eval_split: str) -> None:
    """Data roots, annotation files, classes and num_classes of an mmdet config: training reads
    ``annotations/train.json``; validation and test read ``annotations/<eval_split>.json``; image paths are the
    annotations' ``file_name``s under the root (no ``data_prefix``, as mmdet's COCO configs' ``train2017/``)."""
    meta = dataset_meta(root)
    set_num_classes(cfg.model, len(meta["classes"]))
    for name, split in (("train_dataloader", "train"), ("val_dataloader", eval_split), ("test_dataloader", eval_split)):
        ds = cfg[name].dataset
        ds.data_root = str(root)
        ds.ann_file = f"annotations/{split}.json"
        ds.data_prefix = dict(img="")
        ds.metainfo = dict(classes=meta["classes"], palette=meta["palette"])
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = str(root / "annotations" / f"{eval_split}.json")


SPLIT_LOADERS = (("train_dataloader", "train"), ("val_dataloader", None), ("test_dataloader", None))


def _point_datasets(cfg, kind: DataRoot, root: Path, infos: dict, eval_split: str):
    """Each dataloader's dataset (under its wrappers) pointed at its split's infos file, with those infos
    (``infos[split]``, loaded)."""
    for name, split in SPLIT_LOADERS:
        split = split or eval_split
        ds = _inner(cfg[name].dataset)
        ds.data_root = str(root)
        ds.ann_file = kind.infos(root, split).name
        yield ds, infos[split]


def _use_gt_database(cfg, kind: DataRoot, root: Path, present_only: bool = False) -> dict | None:
    """The GT-database paths of the config's ObjectSample augmentation, checked for every class it samples; the
    transform, or None. ``present_only``: sample only the classes the database has objects of (mmdet3d's sampler
    fails on a class it has none of, and nuScenes-mini or synthetic nuScenes lack some of the 10 classes)."""
    for transform in _inner(cfg.train_dataloader.dataset).pipeline:
        if transform["type"] == "ObjectSample":
            sampler = transform["db_sampler"]
            sampler.data_root, sampler.info_path = str(root), str(kind.db_infos(root))
            db = load_gt_database(sampler.info_path)
            if present_only:
                sampler.sample_groups = {c: n for c, n in sampler.sample_groups.items() if db.get(c)}
                if min_points := sampler.prepare.get("filter_by_min_points"):
                    sampler.prepare.filter_by_min_points = {c: n for c, n in min_points.items() if db.get(c)}
            check_gt_database(root, sampler.info_path, list(sampler.sample_groups),
                              4 * sampler.points_loader.get("load_dim", 4), db)
            return transform
    return None


def _use_kitti_root(cfg, root: Path, eval_split: str) -> None:
    """Data root and infos of an mmdet3d config's datasets and KittiMetric, and the GT-database paths of its
    ObjectSample augmentation, with the ground plane used when every train frame has one (infos written from
    KITTI's training/planes carry a ``plane``). The config's classes stay the config's."""
    classes, config = config_classes(cfg), cfg.filename or "the model config"
    splits = dict.fromkeys(("train", eval_split))  # train first; once when they are the same
    infos = {split: check_kitti_infos(KITTI.infos(root, split), classes, config) for split in splits}
    for ds, split_infos in _point_datasets(cfg, KITTI, root, infos, eval_split):
        check_scans(root / ds.data_prefix["pts"], split_infos["data_list"])
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].ann_file = str(KITTI.infos(root, eval_split))
    if transform := _use_gt_database(cfg, KITTI, root):
        frames = infos["train"]["data_list"]
        transform["use_ground_plane"] = bool(frames) and all("plane" in info for info in frames)


def _use_nuscenes_root(cfg, root: Path, eval_split: str) -> None:
    """Data root, infos and the devkit version (the infos' ``metainfo.version``; NuScenesDataset's own default is
    v1.0-trainval, and NuScenesMetric opens the devkit tables of the version its dataset names) of an mmdet3d
    config's datasets and NuScenesMetric, and the GT-database paths of its ObjectSample augmentation. Every file
    the pipelines load is checked: keyframe scans and sweeps (LiDAR configs), camera images (camera configs)."""
    if eval_split != "val":
        raise UsageError(f"split {eval_split!r}: NuScenesMetric scores the devkit's val split only "
                         "(mini_val for v1.0-mini)")
    classes, config = config_classes(cfg), cfg.filename or "the model config"
    infos = {split: check_nuscenes_infos(NUSCENES.infos(root, split), classes, config, scored=split == eval_split)
             for split in ("train", eval_split)}
    version = infos[eval_split]["metainfo"]["version"]
    if not (root / version).is_dir():
        raise InputError(root / version, f"missing: the nuScenes {version} tables, which NuScenesMetric reads "
                                         "(`admlops data infos` links them into the data root)")
    for ds, split_infos in _point_datasets(cfg, NUSCENES, root, infos, eval_split):
        ds.metainfo = dict(ds.get("metainfo") or {}, classes=classes, version=version)
        check_nuscenes_files(root, ds, split_infos["data_list"])
    for name in ("val_evaluator", "test_evaluator"):
        cfg[name].data_root = str(root)
        cfg[name].ann_file = str(NUSCENES.infos(root, eval_split))
    _use_gt_database(cfg, NUSCENES, root, present_only=True)
    if cfg.train_dataloader.dataset.type == "CBGSDataset":
        labels = {inst["bbox_label_3d"] for info in infos["train"]["data_list"] for inst in info.get("instances", ())}
        categories = infos["train"]["metainfo"]["categories"]
        if absent := [c for c in classes if categories[c] not in labels]:
            raise InputError(NUSCENES.infos(root, "train"), f"no {', '.join(absent)} objects in the train split: the "
                             "config's CBGSDataset (class-balanced sampling) needs every class it trains")


def _load_infos(path: Path) -> tuple[dict, dict, list]:
    """An mmdet3d v2 infos file: (infos, metainfo.categories, data_list); an InputError naming it otherwise."""
    if not path.is_file():
        raise InputError(path, "missing infos file (`admlops data infos` writes one per split)")
    try:
        infos = pickle.loads(path.read_bytes())
        return infos, dict(infos["metainfo"]["categories"]), infos["data_list"]
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise InputError(path, f"not an mmdet3d v2 infos file (metainfo.categories + data_list): {exc!r}") from exc


def _check_categories(path: Path, config: str, classes, categories: dict, dataset) -> None:
    """``classes`` are the dataset class's and among the infos' categories, whose ids follow the dataset class's
    fixed order (labels in the infos are indices into it)."""
    known, kind = dataset.METAINFO["classes"], dataset.__name__
    if unknown := [c for c in classes if c not in known]:
        raise InputError(config, f"classes {unknown} are not {kind} classes (it knows {', '.join(known)})")
    if missing := [c for c in classes if c not in categories]:
        raise InputError(path, f"the config's classes {missing} are not among the infos' categories "
                               f"{sorted(categories)}: the infos were written for other classes")
    if moved := {c: i for c, i in categories.items() if c in known and i != known.index(c)}:
        raise InputError(path, f"category ids {moved} differ from {kind}'s order {known}: labels would be read "
                               "as the wrong classes")


def check_kitti_infos(path: Path, classes: tuple[str, ...], config: str) -> dict:
    """Load a KITTI infos file and check it can serve ``classes``: labels in the infos are indices into their
    ``metainfo.categories``, which mmdet3d's KittiDataset reads in its own fixed class order, and KittiMetric
    names every ground-truth label, DontCare's -1 included, through the same categories."""
    from mmdet3d.datasets import KittiDataset

    infos, categories, frames = _load_infos(path)
    _check_categories(path, config, classes, categories, KittiDataset)
    labels = {inst["bbox_label"] for info in frames for inst in info.get("instances", ())}
    if unnamed := labels - set(categories.values()):
        raise InputError(path, f"instance labels {sorted(unnamed)} have no category (DontCare regions need "
                               "'DontCare': -1 in metainfo.categories; KittiMetric names ground truth through it)")
    return infos


def check_nuscenes_infos(path: Path, classes: tuple[str, ...], config: str, scored: bool = True) -> dict:
    """Load a nuScenes infos file and check it can serve ``classes`` (as KITTI's), names the devkit version it was
    written from and, if NuScenesMetric scores it (``scored``), numbers its samples by position: the metric finds a
    prediction's sample (its token and poses) at ``data_list[sample_idx]``."""
    from mmdet3d.datasets import NuScenesDataset

    from admlops.dataset_formats.nuscenes import VERSIONS

    infos, categories, frames = _load_infos(path)
    _check_categories(path, config, classes, categories, NuScenesDataset)
    if (version := infos["metainfo"].get("version")) not in VERSIONS:
        raise InputError(path, f"metainfo.version {version!r} is not a nuScenes devkit version "
                               f"({', '.join(VERSIONS)}): NuScenesMetric opens the tables of that version")
    if scored and (gaps := [i for i, info in enumerate(frames) if info["sample_idx"] != i][:1]):
        raise InputError(path, f"data_list[{gaps[0]}] has sample_idx {frames[gaps[0]]['sample_idx']}: NuScenesMetric "
                               "looks samples up by position (were samples skipped when the infos were written?)")
    return infos


def check_nuscenes_files(root: Path, ds, frames: list[dict]) -> None:
    """The files ``ds``'s pipeline loads for each frame, as NuScenesDataset resolves them: the keyframe scan and
    its sweeps (with LoadPointsFromMultiSweeps) of a LiDAR config, the six camera images of a camera config."""
    prefix, steps = ds.data_prefix, {t["type"]: t for t in ds.pipeline}
    if points := steps.get("LoadPointsFromFile"):
        check_scans(root / prefix["pts"], frames, 4 * points.get("load_dim", 6))
    if sweeps := steps.get("LoadPointsFromMultiSweeps"):
        for info in frames:
            for sweep in info.get("lidar_sweeps", ()):
                path = sweep["lidar_points"]["lidar_path"]  # NuScenesDataset keeps the name, picks the folder
                folder = prefix["pts"] if "samples" in path else prefix["sweeps"]
                _check_points_file(root / folder / Path(path).name, 4 * sweeps.get("load_dim", 5), "LiDAR sweep")
    if "LoadImageFromFileMono3D" in steps or "LoadMultiViewImageFromFiles" in steps:
        for info in frames:
            for cam, image in info["images"].items():
                path = root / prefix.get(cam, prefix.get("img", "")) / image["img_path"]
                if not path.is_file():
                    raise InputError(path, f"missing {cam} image (named in the data root's infos)")


def check_scans(folder: Path, frames: list[dict], point_bytes: int | None = None) -> None:
    """Every frame's scan exists and is whole: its size a multiple of one point (``point_bytes``, or the infos'
    num_pts_feats float32)."""
    for info in frames:
        points = info["lidar_points"]
        _check_points_file(folder / points["lidar_path"], point_bytes or 4 * points.get("num_pts_feats", 4),
                           "LiDAR scan")


def load_gt_database(info_path: str | Path) -> dict:
    path = Path(info_path)
    if not path.is_file():
        raise InputError(path, "missing GT-database infos: the config's ObjectSample augmentation pastes objects "
                               "from the GT database (`admlops data infos` writes it with the data root)")
    return pickle.loads(path.read_bytes())


def check_gt_database(root: Path, info_path: str, classes, point_bytes: int, db: dict | None = None) -> None:
    """The GT database that ObjectSample pastes objects from: its infos (``db``, when already loaded), an object of
    every class it samples, and every object's points file."""
    db = load_gt_database(info_path) if db is None else db
    if empty := [c for c in classes if not db.get(c)]:
        raise InputError(info_path, f"no {', '.join(empty)} objects in the GT database, which ObjectSample samples")
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


def parse_cfg_options(options: str | list[str] | None) -> dict:
    """``--cfg-options`` as mmdet's and mmdet3d's tools/train.py take them: ``KEY=VALUE`` pairs (a string is split
    as a shell splits it) with the values parsed by mmengine's DictAction (numbers, true/false, None, lists ``a,b``
    or ``[a,b]``, tuples ``(a,b)``, else strings); a pair that is not one is a UsageError naming it."""
    import argparse
    import shlex

    from mmengine.config import DictAction

    try:
        pairs = shlex.split(options) if isinstance(options, str) else list(options or ())
    except ValueError as exc:
        raise UsageError(f"--cfg-options {options!r}: {exc}") from None
    action, parsed = DictAction(option_strings=["--cfg-options"], dest="options"), argparse.Namespace()
    for pair in pairs:
        key, sep, _ = pair.partition("=")
        if not (key and sep):
            raise UsageError(f"--cfg-options {pair!r}: expected KEY=VALUE, e.g. model.test_cfg.score_thr=0.3")
        try:
            action(None, parsed, [pair])
        except AssertionError as exc:  # DictAction asserts balanced brackets
            raise UsageError(f"--cfg-options {pair!r}: {exc}") from None
    return getattr(parsed, "options", None) or {}


def _kind(value) -> str | None:
    return "boolean" if isinstance(value, bool) else "number" if isinstance(value, (int, float)) else None


def merge_cfg_options(cfg, options: dict) -> None:
    """Merge ``options`` (dotted keys, list items by index) into ``cfg`` as mmengine's Config.merge_from_dict does,
    after checking each: the key is one the config has (a misspelt key would otherwise be added silently and
    ignored), and a number or boolean stays one. A UsageError names the option."""
    tree = cfg.to_dict()
    for key, value in options.items():
        node, path = tree, []
        for part in key.split("."):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                where = ".".join(path) or "the config"
                keys = f" (it has {', '.join(map(str, node))})" if isinstance(node, dict) else ""
                raise UsageError(f"--cfg-options {key}={value!r}: {where} has no {part!r}{keys}")
            path.append(part)
        if _kind(node) and _kind(value) != _kind(node):
            raise UsageError(f"--cfg-options {key}={value!r}: expected a {_kind(node)} like the config's {node!r}")
    try:
        cfg.merge_from_dict(options)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # e.g. a list merged into a list item
        raise UsageError(f"--cfg-options {', '.join(options)}: mmengine cannot merge it: {exc}") from None
