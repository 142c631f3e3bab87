"""evaluate's metrics as a Markdown report (the Kubeflow UI renders the evaluate step's ``markdown`` output):
per class COCO AP for a 2D model; for a KITTI 3D model KITTI's 3D, BEV and 2D AP per difficulty at 11 and 40
recall points, at the strict and the loose IoU thresholds, with the class means; for a nuScenes model the devkit's
mAP, NDS and true-positive errors, over the classes the split has and over all, and per class AP at each centre
distance threshold with the class's errors."""
from __future__ import annotations

import math

DIFFICULTIES = ("easy", "moderate", "hard")
KINDS = ("3D", "BEV", "2D")
IOUS = {  # mmdet3d's kitti_eval: min overlaps (Car, Pedestrian, Cyclist) per threshold set
    "strict": "IoU 0.7 Car, 0.5 Pedestrian and Cyclist (KITTI's benchmark)",
    "loose": "3D and BEV IoU 0.5 Car, 0.25 Pedestrian and Cyclist; 2D as strict",
}


def _num(value) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def kitti_markdown(metrics: dict) -> str:
    columns = [(r, d) for r in (11, 40) for d in DIFFICULTIES]
    header = ["class", "metric"] + [f"AP{r} {d}" for r, d in columns]
    lines = [f"# KITTI evaluation ({metrics.get('split', 'val')} split)", "",
             "AP in percent; KITTI ranks by AP40 at moderate difficulty and the strict IoU.", ""]
    lines += _table(["class", "3D AP40 moderate", "BEV AP40 moderate", "2D AP40 moderate"],
                    [[c] + [_num(metrics["headline"].get(f"{c}_{k}_AP40_moderate")) for k in KINDS]
                     for c in metrics["per_class"]]
                    + [["mean"] + [_num(metrics["headline"].get(f"mAP_{k}_AP40_moderate")) for k in KINDS]])
    for iou, what in IOUS.items():
        rows = [[c, k] + [_num(ap.get(f"{k}_AP{r}_{d}_{iou}")) for r, d in columns]
                for c, ap in metrics["per_class"].items() for k in KINDS]
        if iou == "strict":  # KittiMetric's class means are at the strict thresholds
            rows += [["mean", k] + [_num(metrics["overall"].get(f"{k}_AP{r}_{d}")) for r, d in columns] for k in KINDS]
        lines += ["", f"## {iou.capitalize()} thresholds: {what}", ""] + _table(header, rows)
    return "\n".join(lines) + "\n"


def coco_markdown(metrics: dict) -> str:
    bbox = metrics["bbox"]
    lines = [f"# COCO evaluation ({metrics.get('split', 'val')} split)", "",
             f"mAP {_num(bbox.get('bbox_mAP'))}, mAP@0.5 {_num(bbox.get('bbox_mAP_50'))}, "
             f"mAP@0.75 {_num(bbox.get('bbox_mAP_75'))} (0-1)", ""]
    lines += _table(["class", "AP", "AP@0.5"], [[c, _num(ap["AP"]), _num(ap["AP50"])]
                                                 for c, ap in metrics["per_class"].items()])
    return "\n".join(lines) + "\n"


NUSCENES_SUMMARY = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
NUSCENES_ERRORS = ("ATE", "ASE", "AOE", "AVE", "AAE")
NUSCENES_DISTS = ("0.5", "1.0", "2.0", "4.0")


def nuscenes_markdown(metrics: dict) -> str:
    scored = metrics["overall"]["classes"]
    lines = [f"# nuScenes evaluation ({metrics.get('split', 'val')} split)", "",
             "mAP and NDS in 0-1; errors in the devkit's units (ATE m, ASE 1-IoU, AOE rad, AVE m/s, AAE 1-acc; "
             "– where the devkit does not define one). The first row averages the classes the split has ground truth "
             f"of ({', '.join(scored) or 'none'}); the second all classes, as the devkit reports them.", ""]
    lines += _table(["classes", *NUSCENES_SUMMARY],
                    [[f"with ground truth ({len(scored)})", *(_num(metrics["overall"].get(k)) for k in NUSCENES_SUMMARY)],
                     [f"all ({len(metrics['per_class'])})", *(_num(metrics["all_classes"].get(k)) for k in NUSCENES_SUMMARY)]])
    lines += ["", "## Per class", ""] + _table(
        ["class", "AP", *(f"AP@{d} m" for d in NUSCENES_DISTS), *NUSCENES_ERRORS],
        [[c + ("" if c in scored else " (no ground truth)"), _num(ap["AP"]),
          *(_num(ap.get(f"AP_dist_{d}")) for d in NUSCENES_DISTS), *(_num(ap.get(e)) for e in NUSCENES_ERRORS)]
         for c, ap in metrics["per_class"].items()])
    return "\n".join(lines) + "\n"


def markdown(metrics: dict) -> str:
    """The report of evaluate's metrics record, any kind: nuScenes (``all_classes``), KITTI (``headline``), COCO."""
    render = nuscenes_markdown if "all_classes" in metrics else kitti_markdown if "headline" in metrics else coco_markdown
    return render(metrics)
