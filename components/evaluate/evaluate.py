"""Evaluation of a trained model on a split of its dataset, by the model's task (admlops.tasks): COCO bbox metrics
(mmdet's CocoMetric) for a 2D detector, the KITTI benchmark (mmdet3d's KittiMetric) for a 3D voxel detector on an
mmdet3d KITTI data root, the nuScenes detection benchmark (mmdet3d's NuScenesMetric, the devkit) for a 3D model,
LiDAR or camera, on an mmdet3d nuScenes data root. The task's module says what its record holds.

Writes ``metrics.json``: the task's record (``"task"`` names it) and the split.
"""
from __future__ import annotations

import json
from pathlib import Path

from admlops import compat
from admlops.localfs import atomic_dir
from admlops.mmconfig import merge_cfg_options, use_dataset
from admlops.tasks import task_of


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
        metrics = task_of(cfg).run_test(cfg, tmp / "work")
        metrics["split"] = split
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
