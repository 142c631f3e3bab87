"""Logging evaluation results as KFP Metrics (the scalars the Kubeflow UI shows and compares across runs)."""
import math


def log_coco(metrics, result: dict, prefix: str = "") -> None:
    """``metrics`` is a ``kfp.dsl.Metrics`` output; ``result`` is evaluate's metrics record."""
    for key in ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"):
        if key in result["bbox"]:
            metrics.log_metric(prefix + key.removeprefix("bbox_"), round(result["bbox"][key], 4))
    for name, ap in result["per_class"].items():
        if math.isfinite(ap["AP50"]):  # NaN: no ground truth of this class in the split
            metrics.log_metric(f"{prefix}AP50_{name}", round(ap["AP50"], 4))


def log_kitti(metrics, result: dict, prefix: str = "") -> None:
    """A 3D model's KITTI ranking numbers (evaluate's ``headline``): per class 3D, BEV and 2D AP40 at moderate
    difficulty and the strict IoU, and their class means (``mAP_*``), in percent."""
    for key, ap in result["headline"].items():
        if math.isfinite(ap):
            metrics.log_metric(prefix + key, round(ap, 4))


def log_evaluation(metrics, result: dict, prefix: str = "") -> None:
    """Either kind of evaluate's record: KITTI for a 3D model (it has a ``headline``), COCO for a 2D one."""
    (log_kitti if "headline" in result else log_coco)(metrics, result, prefix)
