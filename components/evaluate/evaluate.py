"""COCO bbox evaluation of a trained model on the val split, with mmdet's CocoMetric.

Writes ``metrics.json``: the overall COCO numbers (mAP, mAP@0.5, mAP@0.75, small/medium/large) and,
per class, AP and AP@0.5.
"""
from __future__ import annotations

import json
from pathlib import Path

from admlops import compat
from admlops.mmconfig import use_dataset
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


def evaluate(dataset_dir: str | Path, model_dir: str | Path, out: str | Path, split: str = "val") -> dict:
    """Evaluate ``model_dir`` (train's output) on ``dataset_dir``'s ``split``; publishes ``out/metrics.json``."""
    compat.apply()
    from mmengine.config import Config

    model_dir = Path(model_dir)
    cfg = Config.fromfile(str(model_dir / "config.py"))
    use_dataset(cfg, dataset_dir, eval_split=split)
    cfg.load_from = str(model_dir / "model.pth")
    with atomic_dir(out) as tmp:
        metrics = run_coco_test(cfg, tmp / "work")
        metrics["split"] = split
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
