"""Task kinds: one home for what differs between model kinds (admlops/tasks/base.py: the interface).

    task = task_of(model_cfg)           # the task whose configs read this dataset type
    metrics = task.run_test(cfg, work)  # evaluate's record, with "task": task.name
    get_task(metrics["task"])           # the same task, from any record it wrote

Members (``TASKS``, an admlops.registry.Registry): ``image-detection`` (2D mmdet detectors, image_detection.py),
``voxel-detection`` (3D LiDAR voxel detectors on KITTI, voxel_detection.py), ``nuscenes-detection`` (3D detectors
on nuScenes, evaluated only, nuscenes_detection.py). Adding a kind: a module with a registered Task subclass and
its line in ``TASKS``' map (README: "Extending ADMLOps").
"""
from __future__ import annotations

from admlops.errors import UsageError
from admlops.mmconfig import dataset_type
from admlops.tasks.base import TASKS, BenchInputs, Metric, Task


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name is a UsageError listing the known ones."""
    return TASKS.get(name)


def task_of(cfg) -> Task:
    """The task a model config is (its ``recognises``); a UsageError naming the dataset type when none is."""
    for name in TASKS:
        if (task := TASKS.get(name)).recognises(cfg):
            return task
    raise UsageError(f"no task takes a model that tests on {dataset_type(cfg)}: the tasks are "
                     + "; ".join(f"{n} ({TASKS.get(n).description})" for n in TASKS))


__all__ = ["TASKS", "BenchInputs", "Metric", "Task", "get_task", "task_of"]
