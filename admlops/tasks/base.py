"""The one interface of a task kind (the registry of admlops.tasks): what differs between model kinds.

A task is recognised from a model's config (the dataset its test loop reads) and owns, for its kind of model:

* **evaluation**: ``run_test`` (the test loop and metric evaluate and the parity gates run; its record carries
  ``"task"``, so whoever reads it asks the same task), ``markdown`` (evaluate's report), ``log_metrics`` (the KFP
  scalars), ``summary_lines`` (the run summary), ``per_class`` (promote's accuracy gate) and ``metric`` (the
  headline metric: the parity gates', with the floor a model must reach for them to mean anything);
* **export** (a task with a ``deploy_config``; others are not exportable): the mmdeploy codebase and deploy config,
  the default targets and float allowance, ``check_targets`` (the targets its graph can run on), ``prepare`` (sync
  the deploy config with the model; the input export traces on), ``calibration_set`` (int8's inputs) and
  ``export_summary`` (export's metrics.json);
* **benchmark**: ``bench_inputs`` (the val inputs every row times, built once), ``load_pytorch`` / ``load_backend``
  (a row's model in the worker process), the default batch sizes, what is timed and the modules a row imports
  before its memory baseline.

A task module subclasses :class:`Task`, registers one instance with ``@register`` and is named in ``TASKS``' map
(admlops/tasks/__init__.py). Nothing here imports mmdet, mmdet3d or mmdeploy at module level: a task is cheap to
look up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from admlops import compat
from admlops.errors import UsageError
from admlops.mmconfig import dataset_type
from admlops.registry import Registry

# task name -> module that registers it (admlops.tasks: task_of, get_task)
TASKS: Registry["Task"] = Registry("task", {
    "image-detection": "admlops.tasks.image_detection",
    "voxel-detection": "admlops.tasks.voxel_detection",
    "nuscenes-detection": "admlops.tasks.nuscenes_detection",
})


@dataclass(frozen=True)
class Metric:
    """The number a gate compares: where it sits in a metrics record (the task's ``run_test`` layout), how many
    points one unit of it is, and the floor PyTorch must reach for a parity gate on it to mean anything (a model
    that detects nothing matches every backend exactly: 0.00 against 0.00 is no evidence of parity)."""

    key: str  # gates.json's "metric"
    label: str  # how messages name it
    path: tuple[str, ...]
    points_per_unit: float  # COCO mAP is 0..1: 100; KITTI AP is in percent: 1
    unit: str
    floor: float  # in the metric's own unit

    def of(self, metrics: dict) -> float:
        value = metrics
        try:
            for key in self.path:
                value = value[key]
            return float(value)
        except (KeyError, TypeError, ValueError):
            got = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
            raise UsageError(f"metrics without {'/'.join(self.path)} ({self.label}), which the gate compares: "
                             f"got keys {got}") from None


@dataclass
class BenchInputs:
    """What every benchmark row runs on, built once: ``inputs`` (an array the worker indexes per call), their
    ``samples`` (data samples: metainfo the decoding needs), the ``files`` they came from, the input ``shape`` as
    the report shows it, and ``accuracy(detections)``: the rows' accuracy on them (None where the task's accuracy
    is the export's parity gate)."""

    files: list[str]
    inputs: np.ndarray
    samples: list
    shape: list
    accuracy: Callable[[dict], float | None]


class Task:
    """A kind of model (module doc). Subclasses set the class attributes and implement what their kind runs."""

    name: str  # the registry's name; recorded in every metrics record ("task") and benchmark.json
    description: str  # how messages name the kind, e.g. "2D image detector (mmdet, CocoDataset)"
    dataset: str  # the dataset type its configs test on (mmconfig.dataset_type)
    metric: Metric
    val_key: str  # the gated metric as the validation loop logs it during training (tune's pruner reads it)
    per_class_label: str  # what ``per_class`` measures, e.g. "AP@0.5"
    # export: None = this kind is not exportable
    deploy_config: str | None = None
    codebase: str | None = None
    targets: str = ""
    max_drop: float = 0.5
    qat_keep_float: tuple[str, ...] = ()  # modules QAT keeps float unless the config's qat.keep_float names others
    # benchmark
    input_unit = "image"  # what one benchmark input is
    batch_sizes: tuple[int, ...] = (1,)
    timed = ""
    worker_imports: tuple[str, ...] = ()  # modules every benchmark row imports before its memory baseline
    pytorch_imports: tuple[str, ...] = ()  # and the PyTorch row's own

    def recognises(self, cfg) -> bool:
        """Whether a model config is of this kind."""
        return dataset_type(cfg) == self.dataset

    # ---- evaluation --------------------------------------------------------------------------------------------

    def run_test(self, cfg, work_dir: str | Path, build_runner=None) -> dict:
        """Run the test loop of a configured ``cfg`` with the task's metric; the metrics record (with ``"task"``).
        ``build_runner(cfg)`` builds the runner (default: mmengine's ``Runner.from_cfg``); the parity gates pass
        one that runs a deployed backend, so PyTorch and backend numbers come from the same code."""
        from mmengine.runner import Runner

        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        cfg.work_dir = str(work_dir)
        compat.own_runner_state(cfg)
        self.prepare_test(cfg, work_dir)
        return {"task": self.name, **self.metrics((build_runner or Runner.from_cfg)(cfg).test(), cfg, work_dir)}

    def prepare_test(self, cfg, work_dir: Path) -> None:
        """Point the evaluator's outputs into ``work_dir`` before the test loop runs."""
        raise NotImplementedError

    def metrics(self, raw: dict, cfg, work_dir: Path) -> dict:
        """The metrics record from the evaluator's flat results."""
        raise NotImplementedError

    def markdown(self, metrics: dict) -> str:
        raise NotImplementedError

    def log_metrics(self, kfp_metrics, result: dict, prefix: str = "") -> None:
        """The record's headline numbers as KFP scalars (``kfp_metrics``: a ``kfp.dsl.Metrics`` output)."""
        raise NotImplementedError

    def summary_lines(self, metrics: dict) -> list[str]:
        """The run summary's lines for evaluate's record."""
        raise NotImplementedError

    def per_class(self, metrics: dict) -> dict[str, float]:
        """Per class, the number promote's accuracy gate compares (in ``metric``'s unit)."""
        raise NotImplementedError

    # ---- optimisation ------------------------------------------------------------------------------------------

    def prunable(self, model, cfg, dataset_dir):
        """What structural pruning traces: ``(forward, example)``, ``forward(model, example)`` running the prunable
        part of ``model`` (or of a copy of it: the MACs counter runs one) on one input of ``dataset_dir`` as the
        config prepares it, returning its tensors (nested)."""
        raise UsageError(f"pruning a {self.description} is not supported")

    def qat_forward(self):
        """What quantization-aware training calibrates its activation ranges with: ``forward(model, batch)`` running
        the network on one of the task's int8 calibration batches (``calibration_set``)."""
        raise UsageError(f"quantization-aware training of a {self.description} is not supported: it takes the kinds "
                         "of model with int8 deploy targets (2D image detectors, 3D voxel detectors)")

    # ---- export ------------------------------------------------------------------------------------------------

    def check_exportable(self) -> None:
        if self.deploy_config is None:
            exportable = [t.description for t in map(TASKS.get, TASKS) if t.deploy_config]
            raise UsageError(f"export of a {self.description} is not supported: export takes "
                             f"{' and '.join(exportable)}")

    def check_targets(self, chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The deploy targets, refused (a UsageError) where the task's graph cannot run on one."""
        return chosen

    def prepare(self, deploy_cfg, model_cfg, dataset_dir) -> str:
        """Sync the deploy config with the model in place; the input file the export traces on."""
        raise NotImplementedError

    def calibration_set(self, dataset_dir, model_cfg, deploy_cfg, count: int, split: str = "train"):
        """Int8 calibration: ``count`` train inputs as the deployed graph takes them (a backends Calibration)."""
        raise NotImplementedError

    def export_summary(self, metrics: dict[str, dict], pytorch: dict) -> dict:
        """export's metrics.json: PyTorch's record, every target's, the gated metric, and ONNX Runtime fp32's own
        key with its difference from PyTorch on it (in the metric's unit)."""
        out = {"task": self.name, "pytorch": pytorch, "backends": metrics, "gated_metric": self.metric.key}
        if "onnxruntime-fp32" in metrics:
            out["onnxruntime"] = metrics["onnxruntime-fp32"]
            out["difference"] = self.metric.of(out["onnxruntime"]) - self.metric.of(pytorch)
        return out

    def export_line(self, tag: str, measured: dict, pytorch: dict) -> str:
        """The run summary's line for one deploy target's record beside PyTorch's."""
        got, ref = self.metric.of(measured), self.metric.of(pytorch)
        return (f"{tag:<18} {self.metric.key} {got:.2f}  (PyTorch {ref:.2f}, difference "
                f"{(got - ref) * self.metric.points_per_unit:+.2f} points)")

    # ---- benchmark ---------------------------------------------------------------------------------------------

    def bench_inputs(self, dataset_dir: Path, export_dir: Path, max_inputs: int, batch_sizes: list[int]) -> BenchInputs:
        raise NotImplementedError

    def load_pytorch(self, spec: dict):
        """Benchmark worker: (predict(batch, indices), after(outputs) -> per input (dets, labels), threads used)."""
        raise NotImplementedError

    def load_backend(self, spec: dict):
        raise NotImplementedError


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: registers one instance of a Task subclass in ``TASKS`` under its ``name``."""
    TASKS.register(cls.name)(cls())
    return cls


def number(value) -> str:
    """A metric in a Markdown table: two decimals, ``–`` where it is undefined."""
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def log_finite(kfp_metrics, values: dict[str, float], prefix: str = "") -> None:
    """Each finite value as a KFP scalar, rounded to 4 decimals (NaN: a class without ground truth)."""
    for key, value in values.items():
        if value is not None and math.isfinite(value):
            kfp_metrics.log_metric(prefix + key, round(value, 4))
