"""3D detection on nuScenes: an mmdet3d model, LiDAR (CenterPoint) or camera (FCOS3D), on an mmdet3d nuScenes data
root. Evaluated with mmdet3d's NuScenesMetric, which runs the nuScenes devkit: mAP, NDS and the mean TP errors
(ATE, ASE, AOE, AVE, AAE), and per class AP (centre-distance thresholds 0.5, 1, 2, 4 m and their mean) and TP
errors, as fractions (``nuscenes_metrics``). Not exportable: the 3D export takes KITTI voxel detectors.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path

from admlops.mmconfig import NUSCENES_DATASET
from admlops.tasks.base import Metric, Task, log_finite, number, register, table

NUSCENES_KEY = re.compile(r"/pred_instances_3d_NuScenes/(?P<name>.+)$")
TP_ERRORS = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}
EVAL_VERSION = "detection_cvpr_2019"  # NuScenesMetric's default detection config (class ranges, thresholds)
# the devkit's mAP over the classes the split has ground truth of (0-1); the floor as a 2D detector's
NUSCENES_MAP = Metric("mAP", "nuScenes mAP (classes with ground truth)", ("overall", "mAP"), 100.0,
                      "points (mAP x 100)", 0.05)
SUMMARY = ("mAP", "NDS", "mATE", "mASE", "mAOE", "mAVE", "mAAE")
DISTS = ("0.5", "1.0", "2.0", "4.0")


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


@register
class NuScenesDetection(Task):
    name = "nuscenes-detection"
    description = f"3D detector on nuScenes (mmdet3d, {NUSCENES_DATASET}: LiDAR or camera)"
    dataset = NUSCENES_DATASET
    metric = NUSCENES_MAP
    val_key = "NuScenes metric/pred_instances_3d_NuScenes/mAP"
    per_class_label = "AP (mean over centre distances)"

    def prepare_test(self, cfg, work_dir: Path) -> None:
        """Detections in the nuScenes submission format, and the devkit's summary, are kept under
        ``work_dir/detections/pred_instances_3d/``."""
        cfg.test_evaluator.jsonfile_prefix = str(work_dir / "detections")

    def metrics(self, raw: dict, cfg, work_dir: Path) -> dict:
        classes = cfg.test_dataloader.dataset.metainfo["classes"]
        return nuscenes_metrics(raw, classes, classes_with_ground_truth(cfg.test_evaluator.ann_file, classes))

    def markdown(self, metrics: dict) -> str:
        """The devkit's mAP, NDS and true-positive errors, over the classes the split has and over all, and per class
        AP at each centre distance threshold with the class's errors."""
        scored = metrics["overall"]["classes"]
        lines = [f"# nuScenes evaluation ({metrics.get('split', 'val')} split)", "",
                 "mAP and NDS in 0-1; errors in the devkit's units (ATE m, ASE 1-IoU, AOE rad, AVE m/s, AAE 1-acc; "
                 "– where the devkit does not define one). The first row averages the classes the split has ground "
                 f"truth of ({', '.join(scored) or 'none'}); the second all classes, as the devkit reports them.", ""]
        lines += table(["classes", *SUMMARY],
                       [[f"with ground truth ({len(scored)})", *(number(metrics["overall"].get(k)) for k in SUMMARY)],
                        [f"all ({len(metrics['per_class'])})", *(number(metrics["all_classes"].get(k)) for k in SUMMARY)]])
        lines += ["", "## Per class", ""] + table(
            ["class", "AP", *(f"AP@{d} m" for d in DISTS), *TP_ERRORS.values()],
            [[c + ("" if c in scored else " (no ground truth)"), number(ap["AP"]),
              *(number(ap.get(f"AP_dist_{d}")) for d in DISTS), *(number(ap.get(e)) for e in TP_ERRORS.values())]
             for c, ap in metrics["per_class"].items()])
        return "\n".join(lines) + "\n"

    def log_metrics(self, kfp_metrics, result: dict, prefix: str = "") -> None:
        """``headline``: mAP and NDS over the classes with ground truth, and each such class's AP."""
        log_finite(kfp_metrics, result["headline"], prefix)

    def summary_lines(self, metrics: dict) -> list[str]:
        o = metrics["overall"]
        lines = [f"nuScenes ({', '.join(o['classes']) or 'no class with ground truth'}): mAP {number(o['mAP'])}  "
                 f"NDS {number(o['NDS'])}"]
        return lines + [f"nuScenes AP {cls:<22} {metrics['per_class'][cls]['AP']:.3f}" for cls in o["classes"]]

    def per_class(self, metrics: dict) -> dict[str, float]:
        return {cls: ap["AP"] for cls, ap in metrics["per_class"].items()}
