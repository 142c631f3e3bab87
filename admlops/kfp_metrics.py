"""Logging COCO results as KFP Metrics (the scalars the Kubeflow UI shows and compares across runs)."""
import math


def log_coco(metrics, result: dict, prefix: str = "") -> None:
    """``metrics`` is a ``kfp.dsl.Metrics`` output; ``result`` is evaluate's metrics record."""
    for key in ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75"):
        if key in result["bbox"]:
            metrics.log_metric(prefix + key.removeprefix("bbox_"), round(result["bbox"][key], 4))
    for name, ap in result["per_class"].items():
        if math.isfinite(ap["AP50"]):  # NaN: no ground truth of this class in the split
            metrics.log_metric(f"{prefix}AP50_{name}", round(ap["AP50"], 4))
