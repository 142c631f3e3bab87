"""Evaluation of a trained model on the val split: COCO bbox metrics (mmdet's CocoMetric) for a 2D model, the
KITTI benchmark (mmdet3d's KittiMetric) for a 3D model on an mmdet3d KITTI data root.

Writes ``metrics.json``. 2D: the overall COCO numbers (mAP, mAP@0.5, mAP@0.75, small/medium/large) and, per
class, AP and AP@0.5. 3D: per class, 3D, BEV and 2D AP at 11 and 40 recall points for each difficulty, at
KITTI's IoU thresholds (``strict``: 0.7 Car, 0.5 Pedestrian/Cyclist) and the looser ones, in percent.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from admlops import compat
from admlops.mmconfig import KITTI_DATASET, dataset_type, use_dataset
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


def run_coco_test(cfg, work_dir: str | Path, build_runner=None) -> dict:
    """Run the test loop of a configured ``cfg`` with CocoMetric; returns overall and per-class metrics.

    ``build_runner(cfg)`` builds the runner (default: mmengine's ``Runner.from_cfg``); export passes one
    that wraps an ONNX Runtime model, so PyTorch and ONNX numbers come from the same code.
    """
    from mmengine.runner import Runner

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(work_dir)
    cfg.test_evaluator.outfile_prefix = str(work_dir / "detections")
    runner = (build_runner or Runner.from_cfg)(cfg)
    raw = runner.test()
    overall = {k.removeprefix("coco/"): float(v) for k, v in raw.items() if k.startswith("coco/bbox_")}
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


def run_kitti_test(cfg, work_dir: str | Path) -> dict:
    """Run the test loop of a configured mmdet3d ``cfg`` with KittiMetric; returns ``kitti_metrics``. The
    detections in KITTI's evaluation format are kept in ``work_dir/detections/pred_instances_3d.pkl``."""
    from mmengine.runner import Runner

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg.work_dir = str(work_dir)
    cfg.test_evaluator.pklfile_prefix = str(work_dir / "detections")
    return kitti_metrics(Runner.from_cfg(cfg).test())


def evaluate(dataset_dir: str | Path, model_dir: str | Path, out: str | Path, split: str = "val") -> dict:
    """Evaluate ``model_dir`` (train's output) on ``dataset_dir``'s ``split``; publishes ``out/metrics.json``."""
    compat.apply()
    from mmengine.config import Config

    model_dir = Path(model_dir)
    cfg = Config.fromfile(str(model_dir / "config.py"))
    use_dataset(cfg, dataset_dir, eval_split=split)
    cfg.load_from = str(model_dir / "model.pth")
    with atomic_dir(out) as tmp:
        run_test = run_kitti_test if dataset_type(cfg) == KITTI_DATASET else run_coco_test
        metrics = run_test(cfg, tmp / "work")
        metrics["split"] = split
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
