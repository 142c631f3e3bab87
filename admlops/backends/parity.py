"""The parity gate: every deployed backend x precision is evaluated with the same metric code, on the same val
split, as the PyTorch model, and the drop of one headline metric is held to an allowance.

Evaluation goes through mmdeploy's backend model for the exported graph, with its backend wrapper swapped for one
that calls our Runner, in the model's task's test loop (admlops.tasks: ``run_test``, the code evaluate runs on the
PyTorch model): so the backend is the only thing that differs between two numbers. The task names the gated metric
(``Metric``: mAP@0.5 for a 2D detector, the class mean of KITTI's 3D AP40 moderate for a 3D voxel detector) and its
floor, below which the gates are not meaningful.

Allowances are in points of the gated metric (mAP x 100; KITTI AP is in percent already): by default 0.5 for fp32,
fp16 and bf16 and 1.5 for int8 (a 3D export allows 1.0 for fp32). A drop above the allowance fails the gate;
gates.json lists every gate, and ``enforce`` raises StepFailed (exit 4) naming each failing backend, precision,
the measured and the allowed drop.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from admlops import compat
from admlops.backends import build_settings, get_backend
from admlops.backends.base import Runner
from admlops.backends.graphs import carried_qdq
from admlops.errors import StepFailed, UsageError
from admlops.tasks.base import Metric

if TYPE_CHECKING:
    from admlops.tasks.base import Task


GATES_FILE = "gates.json"
MAX_DROP_FLOAT = 0.5  # default allowed mAP@0.5 drop, points: fp32, fp16, bf16
MAX_DROP_INT8 = 1.5


def allowances(max_drop_float: float | None = MAX_DROP_FLOAT,
               max_drop_int8: float | None = MAX_DROP_INT8) -> dict[str, float]:
    """Allowed drop of the gated metric in points per precision (None: the default)."""
    max_drop_float = MAX_DROP_FLOAT if max_drop_float is None else max_drop_float
    max_drop_int8 = MAX_DROP_INT8 if max_drop_int8 is None else max_drop_int8
    if max_drop_float < 0 or max_drop_int8 < 0:
        raise UsageError(f"allowed metric drops must be >= 0 points: got {max_drop_float} (float), "
                         f"{max_drop_int8} (int8)")
    return {"fp32": max_drop_float, "fp16": max_drop_float, "bf16": max_drop_float, "int8": max_drop_int8}


def evaluate_runner(runner: Runner, onnx_file: Path, model_cfg, deploy_cfg, work_dir: Path, task: Task) -> dict:
    """Metrics of ``runner`` on the val split ``model_cfg`` points at: ``task``'s test loop and record (its
    ``run_test``), with mmdeploy's backend model of the task's codebase in the model's place."""
    compat.apply()
    import torch
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.backend.base import BaseWrapper

    class RunnerWrapper(BaseWrapper):
        """mmdeploy's backend-wrapper interface (inputs by name in, outputs by name out) over our Runner."""

        def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            feeds = {name: x.cpu().numpy() for name, x in inputs.items()}
            out = runner(feeds if len(feeds) > 1 else next(iter(feeds.values())))
            return {k: torch.from_numpy(v) for k, v in out.items()}

    processor = build_task_processor(model_cfg, deploy_cfg, "cpu")
    model = processor.build_backend_model([str(onnx_file)], data_preprocessor_updater=processor.update_data_preprocessor)
    model.wrapper = RunnerWrapper(model.wrapper.output_names)
    return task.run_test(model_cfg, work_dir, build_runner=lambda cfg: processor.build_test_runner(model, cfg.work_dir))


@dataclass
class Gate:
    backend: str
    precision: str
    pytorch: float  # the metric of the PyTorch model (mAP@0.5: 0..1; KITTI AP: percent)
    measured: float  # the metric of the backend
    drop_points: float  # (pytorch - measured) in points; negative = better than PyTorch
    allowed_points: float
    passed: bool
    metric: Metric = field(repr=False)  # named once, at the top of gates.json

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.backend} {self.precision}: {self.metric.label} {self.measured:.4f} vs PyTorch "
                f"{self.pytorch:.4f}, drop {self.drop_points:+.2f} points, allowed {self.allowed_points:.2f}: "
                f"{verdict}")


def gate(backend: str, precision: str, measured: dict, pytorch: dict, allowed: dict[str, float],
         metric: Metric) -> Gate:
    """The gate of one backend x precision on ``metric`` from its and PyTorch's metrics."""
    ours, ref = metric.of(measured), metric.of(pytorch)
    drop = round((ref - ours) * metric.points_per_unit, 6)
    return Gate(backend, precision, ref, ours, drop, allowed[precision], drop <= allowed[precision], metric)


def gates_report(gates: list[Gate]) -> dict:
    """gates.json: every gate (one at least), and the floor (``met``: PyTorch reached it); ``passed`` only when
    every gate passed and the floor was met."""
    metric = gates[0].metric
    floor = {"label": metric.label, "value": metric.floor, "pytorch": gates[0].pytorch,
             "met": gates[0].pytorch >= metric.floor}
    return {"metric": metric.key, "unit": metric.unit, "reference": "pytorch", "floor": floor,
            "passed": floor["met"] and all(g.passed for g in gates),
            "gates": [{k: v for k, v in asdict(g).items() if k != "metric"} for g in gates]}


def below_floor(report: dict | None) -> str | None:
    """What to say of a gates.json whose PyTorch reference is below its floor (None when met or not recorded)."""
    floor = (report or {}).get("floor")
    if not floor or floor["met"]:
        return None
    return (f"PyTorch {floor['label']} {floor['pytorch']:.4f} is below the floor {floor['value']:.4f}: the model has "
            f"learned too little for its parity gates to mean anything (not meaningful, not passed)")


def remedy(precision: str) -> str:
    """What the product offers a target that failed its gate."""
    if precision == "int8":
        return ("calibrate on more train images (the pipeline's deploy_calibration_images, export's "
                "--calibration-images) and build for the deploying CPU's int8 kernels (the deploy config's int8_cpu); "
                "or train with int8 in the loop: admlops qat (the qat pipeline)")
    return ("a float target should match PyTorch: check the deploy config's post-processing and input shapes against "
            "the model's test pipeline, and the backend's build.json")


def failed_gates(export_dir: Path) -> list[dict]:
    """The failed gates (gates.json records) of an export directory; none when it has no gates.json."""
    path = Path(export_dir) / GATES_FILE
    return [g for g in json.loads(path.read_text())["gates"] if not g["passed"]] if path.is_file() else []


def deploy_gates(*export_dirs: str | Path | None) -> dict | None:
    """One gates record of the export steps' gates.json files (export's, export-trt's): every target's gate, passed
    only when all passed; the floor is the first's (each gates against the same PyTorch evaluation)."""
    reports = [json.loads((Path(d) / GATES_FILE).read_text()) for d in export_dirs
               if d and (Path(d) / GATES_FILE).is_file()]
    if not reports:
        return None
    return {**reports[0], "passed": all(r["passed"] for r in reports),
            "gates": [g for r in reports for g in r["gates"]]}


def enforce(gates: list[Gate]) -> None:
    """Raise StepFailed naming every failing gate, or the floor PyTorch did not reach."""
    vacuous = below_floor(gates_report(gates))
    if vacuous:
        raise StepFailed(f"parity gates not meaningful: {vacuous}")
    failed = [g for g in gates if not g.passed]
    if failed:
        raise StepFailed("parity gate failed: " + "; ".join(g.describe() for g in failed) + ". Remedy: " +
                         "; ".join(dict.fromkeys(remedy(g.precision) for g in failed)))


def deploy_and_gate(targets: list[tuple[str, str]], onnx_file: Path, out_dir: Path, dataset_dir: str | Path, model_cfg,
                    deploy_cfg, pytorch: dict, allowed: dict[str, float], calibration_images: int, task: Task,
                    previous: Path | None = None, metric: Metric | None = None) -> tuple[dict[str, dict], list[Gate]]:
    """Build every (backend, precision) of ``targets`` from ``onnx_file`` into ``out_dir/<backend>-<precision>/``,
    evaluate each with ``task``'s test loop, and gate it against ``pytorch``'s metrics on ``metric`` (default the
    task's). Int8 targets share one calibration set of ``calibration_images`` train inputs (the task's
    ``calibration_set``: images for a 2D detector, voxelized scans for a 3D one), unless the graph carries its own
    Q/DQ pairs (a quantization-aware trained model's), which int8 takes as it is. ``previous``: an earlier output
    whose per-target caches may be reused.
    Writes ``out_dir/gates.json``; returns the metrics per target and the gates (enforcing is the caller's)."""
    metric = metric or task.metric
    for name in dict.fromkeys(name for name, _ in targets):  # a target that cannot run the graph: refused before any build
        get_backend(name).check_graph(onnx_file)
    carried = carried_qdq(onnx_file)
    settings = build_settings(deploy_cfg)
    shapes = settings.get("input_shapes")
    calibration, metrics, gates = None, {}, []
    for name, precision in tqdm(targets, desc="deploy targets", unit="target"):
        tag = f"{name}-{precision}"
        backend = get_backend(name)
        if precision == "int8" and calibration is None and not carried:
            calibration = task.calibration_set(dataset_dir, model_cfg, deploy_cfg, calibration_images)
        backend.build(onnx_file, out_dir / tag, precision, calibration, shapes, settings.get(name, {}),
                      cache_dir=previous / tag if previous and (previous / tag).is_dir() else None)
        runner = backend.load(out_dir / tag)
        metrics[tag] = evaluate_runner(runner, onnx_file, model_cfg, deploy_cfg, out_dir / ".eval" / tag, task)
        gates.append(gate(name, precision, metrics[tag], pytorch, allowed, metric))
        print(gates[-1].describe(), flush=True)
    shutil.rmtree(out_dir / ".eval", ignore_errors=True)
    (out_dir / GATES_FILE).write_text(json.dumps(gates_report(gates), indent=2))
    return metrics, gates
