"""Evaluation of a trained model on the val split: COCO bbox metrics (mmdet's CocoMetric) for a 2D model, the
KITTI benchmark (mmdet3d's KittiMetric) for a 3D model on an mmdet3d KITTI data root, the nuScenes detection
benchmark (mmdet3d's NuScenesMetric, which runs the nuScenes devkit) for a 3D model, LiDAR or camera, on an mmdet3d
nuScenes data root.

Writes ``metrics.json``. 2D: the overall COCO numbers (mAP, mAP@0.5, mAP@0.75, small/medium/large) and, per
class, AP and AP@0.5. 3D: per class, 3D, BEV and 2D AP at 11 and 40 recall points for each difficulty, at
KITTI's IoU thresholds (``strict``: 0.7 Car, 0.5 Pedestrian/Cyclist) and the looser ones, in percent. nuScenes:
mAP, NDS and the mean TP errors (ATE, ASE, AOE, AVE, AAE), and per class AP (centre-distance thresholds 0.5, 1, 2,
4 m and their mean) and TP errors, as fractions (``nuscenes_metrics``).
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

from admlops import compat
from admlops.mmconfig import KITTI_DATASET, NUSCENES_DATASET, dataset_type, merge_cfg_options, use_dataset
from admlops.localfs import atomic_dir


def per_class_ap(ann_file: str | Path, det_file: str | Path) -> dict[str, dict[str, float]]:
    """AP (IoU .50:.95) and AP50 per category from COCO ground truth and a COCO results file.

    mmdet's CocoMetric reports only the first per class; both come from the same COCOeval here.
    """
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann_file))
    dets = json.loads(Path(det_file).read_text())
    result = {}
    ev = None
    if dets:
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
    for k, cat_id in enumerate(sorted(gt.getCatIds())):
        name = gt.loadCats(cat_id)[0]["name"]
        if ev is None:
            result[name] = {"AP": 0.0, "AP50": 0.0}
            continue
        prec = ev.eval["precision"][:, :, k, 0, -1]  # [iou, recall, cat, area=all, maxdets=100]
        ap = float(np.mean(prec[prec > -1])) if (prec > -1).any() else float("nan")
        p50 = prec[0][prec[0] > -1]
        result[name] = {"AP": ap, "AP50": float(np.mean(p50)) if p50.size else float("nan")}
    return result


# CocoMetric's overall keys: it returns none of them when the model detected nothing on the whole split.
COCO_BBOX_KEYS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l")


def _test_run(cfg, work_dir: str | Path) -> Path:
    """Point ``cfg`` at ``work_dir``, with a visualizer and message hub of its own (compat.own_runner_state)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(work_dir)
    compat.own_runner_state(cfg)
    return work_dir


def run_coco_test(cfg, work_dir: str | Path, build_runner=None) -> dict:
    """Run the test loop of a configured ``cfg`` with CocoMetric; returns overall and per-class metrics.

    ``build_runner(cfg)`` builds the runner (default: mmengine's ``Runner.from_cfg``); export passes one
    that wraps an ONNX Runtime model, so PyTorch and ONNX numbers come from the same code.
    """
    from mmengine.runner import Runner

    work_dir = _test_run(cfg, work_dir)
    cfg.test_evaluator.outfile_prefix = str(work_dir / "detections")
    runner = (build_runner or Runner.from_cfg)(cfg)
    raw = runner.test()
    overall = {k.removeprefix("coco/"): float(v) for k, v in raw.items() if k.startswith("coco/bbox_")}
    if not overall:  # nothing detected anywhere: every AP is 0, not absent
        overall = dict.fromkeys(COCO_BBOX_KEYS, 0.0)
    per_class = per_class_ap(cfg.test_evaluator.ann_file, work_dir / "detections.bbox.json")
    return {"bbox": overall, "per_class": per_class}


KITTI_KEY = re.compile(r"/pred_instances_3d/KITTI/(?P<cls>.+?)_(?P<metric>(?:3D|BEV|2D)_AP(?:11|40)_[a-z_]+)$")


def kitti_metrics(raw: dict[str, float]) -> dict:
    """KittiMetric's flat results (``Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict``: ...) as
    ``per_class`` (``{"Car": {"3D_AP40_moderate_strict": ...}}``), ``overall`` (the class mean at the strict
    thresholds) and ``headline``: KITTI's ranking numbers, AP40 at moderate difficulty and the strict IoU."""
    per_class: dict[str, dict[str, float]] = {}
    for key, value in raw.items():
        if match := KITTI_KEY.search(key):
            per_class.setdefault(match["cls"], {})[match["metric"]] = float(value)
    overall = per_class.pop("Overall", {})
    headline = {f"{cls}_{kind}_AP40_moderate": ap[f"{kind}_AP40_moderate_strict"]
                for cls, ap in per_class.items() for kind in ("3D", "BEV", "2D")}
    headline.update({f"mAP_{kind}_AP40_moderate": overall[f"{kind}_AP40_moderate"]
                     for kind in ("3D", "BEV", "2D") if f"{kind}_AP40_moderate" in overall})
    return {"headline": headline, "per_class": per_class, "overall": overall}


def run_kitti_test(cfg, work_dir: str | Path, build_runner=None) -> dict:
    """Run the test loop of a configured mmdet3d ``cfg`` with KittiMetric; returns ``kitti_metrics``. The
    detections in KITTI's evaluation format are kept in ``work_dir/detections/pred_instances_3d.pkl``.
    ``build_runner(cfg)`` as for run_coco_test (export passes one that wraps the ONNX Runtime model)."""
    from mmengine.runner import Runner

    work_dir = _test_run(cfg, work_dir)
    cfg.test_evaluator.pklfile_prefix = str(work_dir / "detections")
    return kitti_metrics((build_runner or Runner.from_cfg)(cfg).test())


NUSCENES_KEY = re.compile(r"/pred_instances_3d_NuScenes/(?P<name>.+)$")
TP_ERRORS = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}
EVAL_VERSION = "detection_cvpr_2019"  # NuScenesMetric's default detection config (class ranges, thresholds)


def _number(value) -> float | None:
    """A metric as JSON can hold it: NaN (an error the devkit does not define, e.g. a cone's orientation) is None."""
    return None if value != value else float(value)


def nuscenes_metrics(raw: dict[str, float], classes, scored) -> dict:
    """NuScenesMetric's flat results (``NuScenes metric/pred_instances_3d_NuScenes/car_AP_dist_1.0``: ...) as
    ``per_class`` (``{"car": {"AP": ..., "AP_dist_0.5": ..., "ATE": ...}}``), ``all_classes`` (the devkit's mAP, NDS
    and mean errors over every class of ``classes``), ``overall`` (the same devkit formulas over the ``scored``
    classes only: those with ground truth in the split) and ``headline`` (``overall``'s mAP and NDS, and each scored
    class's AP). A class without ground truth has AP 0 and errors 1 in the devkit's means, so on a split that lacks
    classes (nuScenes-mini, synthetic data) ``all_classes`` is bounded by the share of classes present; on the full
    val split every class is present and the two agree."""
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.data_classes import DetectionMetrics

    names = {m["name"]: v for k, v in raw.items() if (m := NUSCENES_KEY.search(k))}
    per_class = {}
    for cls in classes:
        aps = {k.removeprefix(f"{cls}_"): v for k, v in names.items() if k.startswith(f"{cls}_AP_dist_")}
        per_class[cls] = {"AP": float(sum(aps.values()) / len(aps)), **aps,
                          **{short: _number(names[f"{cls}_{err}"]) for err, short in TP_ERRORS.items()}}
    keys = ("mAP", "NDS", *(f"m{short}" for short in TP_ERRORS.values()))
    summary = {key: _number(names[key]) for key in keys}
    scored = [cls for cls in classes if cls in set(scored)]
    detection = config_factory(EVAL_VERSION)
    detection.class_names = scored  # the classes DetectionMetrics averages over (its config insists on all 10)
    devkit = DetectionMetrics(detection)
    for cls in scored:
        for dist in devkit.cfg.dist_ths:
            devkit.add_label_ap(cls, dist, names[f"{cls}_AP_dist_{dist}"])
        for err in TP_ERRORS:
            devkit.add_label_tp(cls, err, names[f"{cls}_{err}"])
    nan = float("nan")
    means = [devkit.mean_ap, devkit.nd_score, *map(devkit.tp_errors.get, TP_ERRORS)] if scored else [nan] * len(keys)
    overall = {**{key: _number(value) for key, value in zip(keys, means, strict=True)}, "classes": scored}
    headline = {key: value for key, value in (("mAP", overall["mAP"]), ("NDS", overall["NDS"]),
                                              *((f"{cls}_AP", per_class[cls]["AP"]) for cls in scored))
                if value is not None}  # KFP logs every headline number
    return {"headline": headline, "per_class": per_class, "overall": overall, "all_classes": summary}


def classes_with_ground_truth(ann_file: str | Path, classes) -> list[str]:
    """The ``classes`` with at least one box the devkit scores in infos ``ann_file``: a box with LiDAR or radar
    points (the devkit drops empty ones) within its class's detection range of the ego vehicle (in the LiDAR frame
    moved to the ego frame: the devkit's ego distance). The devkit's other filter, bicycles and motorcycles in bike
    racks, is not applied."""
    import numpy as np
    from nuscenes.eval.detection.config import config_factory

    ranges = config_factory(EVAL_VERSION).class_range
    infos = pickle.loads(Path(ann_file).read_bytes())
    ids = {i: cls for cls, i in infos["metainfo"]["categories"].items() if cls in classes}
    present = set()
    for info in infos["data_list"]:
        lidar2ego = np.asarray(info["lidar_points"]["lidar2ego"])
        for inst in info.get("instances", ()):
            if (cls := ids.get(inst["bbox_label_3d"])) and inst["num_lidar_pts"] + inst["num_radar_pts"] > 0:
                centre = lidar2ego[:3, :3] @ np.asarray(inst["bbox_3d"][:3]) + lidar2ego[:3, 3]
                if np.hypot(centre[0], centre[1]) < ranges[cls]:
                    present.add(cls)
    return [cls for cls in classes if cls in present]


def run_nuscenes_test(cfg, work_dir: str | Path, build_runner=None) -> dict:
    """Run the test loop of a configured mmdet3d ``cfg`` with NuScenesMetric; returns ``nuscenes_metrics``. The
    detections in the nuScenes submission format, and the devkit's summary, are kept under
    ``work_dir/detections/pred_instances_3d/``."""
    from mmengine.runner import Runner

    work_dir = _test_run(cfg, work_dir)
    cfg.test_evaluator.jsonfile_prefix = str(work_dir / "detections")
    raw = (build_runner or Runner.from_cfg)(cfg).test()
    classes = cfg.test_dataloader.dataset.metainfo["classes"]
    return nuscenes_metrics(raw, classes, classes_with_ground_truth(cfg.test_evaluator.ann_file, classes))


RUN_TEST = {KITTI_DATASET: run_kitti_test, NUSCENES_DATASET: run_nuscenes_test}


def evaluate(dataset_dir: str | Path, model_dir: str | Path, out: str | Path, split: str = "val",
             cfg_options: dict | None = None) -> dict:
    """Evaluate ``model_dir`` (train's output) on ``dataset_dir``'s ``split``; publishes ``out/metrics.json``.
    ``cfg_options`` (mmconfig.parse_cfg_options) override the trained config, merged after the dataset is set."""
    compat.apply()
    from mmengine.config import Config

    model_dir = Path(model_dir)
    cfg = Config.fromfile(str(model_dir / "config.py"))
    use_dataset(cfg, dataset_dir, eval_split=split)
    cfg.load_from = str(model_dir / "model.pth")
    cfg.resume = False  # weights only (a config published before train reset it says resume=True after a resume)
    if cfg_options:
        merge_cfg_options(cfg, cfg_options)
    with atomic_dir(out) as tmp:
        run_test = RUN_TEST.get(dataset_type(cfg), run_coco_test)
        metrics = run_test(cfg, tmp / "work")
        metrics["split"] = split
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
