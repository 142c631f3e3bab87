"""The parity gate: every deployed backend x precision is evaluated with the same COCO code, on the same val
split, as the PyTorch model, and its mAP@0.5 drop is held to an allowance.

Evaluation goes through mmdeploy's End2EndModel for the exported graph (its data preprocessor, its mapping of
``dets``/``labels`` back to the original image, mmengine's test loop and mmdet's CocoMetric, exactly as the
ONNX Runtime check always did), with the model's backend wrapper swapped for one that calls our Runner: so the
backend is the only thing that differs between two numbers.

Allowances are in mAP@0.5 points (mAP x 100): by default 0.5 for fp32, fp16 and bf16 and 1.5 for int8. A drop
above the allowance fails the gate; gates.json lists every gate, and ``enforce`` raises StepFailed (exit 4) naming
each failing backend, precision, the measured and the allowed drop.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from admlops import compat
from admlops.backends import get_backend
from admlops.backends.base import Runner
from admlops.backends.calibration import calibration_set
from admlops.components.evaluate.evaluate import run_coco_test
from admlops.errors import StepFailed, UsageError

METRIC = "bbox_mAP_50"
GATES_FILE = "gates.json"
MAX_DROP_FLOAT = 0.5  # default allowed mAP@0.5 drop, points: fp32, fp16, bf16
MAX_DROP_INT8 = 1.5


def allowances(max_drop_float: float = MAX_DROP_FLOAT, max_drop_int8: float = MAX_DROP_INT8) -> dict[str, float]:
    """Allowed mAP@0.5 drop in points per precision."""
    if max_drop_float < 0 or max_drop_int8 < 0:
        raise UsageError(f"allowed mAP@0.5 drops must be >= 0 points: got {max_drop_float} (float), {max_drop_int8} (int8)")
    return {"fp32": max_drop_float, "fp16": max_drop_float, "bf16": max_drop_float, "int8": max_drop_int8}


def evaluate_runner(runner: Runner, onnx_file: Path, model_cfg, deploy_cfg, work_dir: Path) -> dict:
    """COCO metrics of ``runner`` on the val split ``model_cfg`` points at (run_coco_test's result)."""
    compat.apply()
    import torch
    from mmdeploy.apis.utils import build_task_processor
    from mmdeploy.backend.base import BaseWrapper

    class RunnerWrapper(BaseWrapper):
        """mmdeploy's backend-wrapper interface (inputs by name in, outputs by name out) over our Runner."""

        def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            (batch,) = inputs.values()
            return {k: torch.from_numpy(v) for k, v in runner(batch.cpu().numpy()).items()}

    task = build_task_processor(model_cfg, deploy_cfg, "cpu")
    model = task.build_backend_model([str(onnx_file)], task.update_data_preprocessor)
    model.wrapper = RunnerWrapper(model.wrapper.output_names)
    return run_coco_test(model_cfg, work_dir, build_runner=lambda cfg: task.build_test_runner(model, cfg.work_dir))


@dataclass
class Gate:
    backend: str
    precision: str
    pytorch: float  # mAP@0.5 of the PyTorch model, 0..1
    measured: float  # mAP@0.5 of the backend, 0..1
    drop_points: float  # (pytorch - measured) x 100; negative = better than PyTorch
    allowed_points: float
    passed: bool

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (f"{self.backend} {self.precision}: mAP@0.5 {self.measured:.4f} vs PyTorch {self.pytorch:.4f}, "
                f"drop {self.drop_points:+.2f} points, allowed {self.allowed_points:.2f}: {verdict}")


def gate(backend: str, precision: str, measured: dict, pytorch: dict, allowed: dict[str, float]) -> Gate:
    """The gate of one backend x precision from its and PyTorch's COCO metrics (run_coco_test's layout)."""
    ours, ref = measured["bbox"][METRIC], pytorch["bbox"][METRIC]
    drop = round((ref - ours) * 100.0, 6)
    return Gate(backend, precision, ref, ours, drop, allowed[precision], drop <= allowed[precision])


def gates_report(gates: list[Gate]) -> dict:
    return {"metric": METRIC, "unit": "points (mAP x 100)", "reference": "pytorch",
            "passed": all(g.passed for g in gates), "gates": [asdict(g) for g in gates]}


def enforce(gates: list[Gate]) -> None:
    """Raise StepFailed naming every failing gate."""
    failed = [g for g in gates if not g.passed]
    if failed:
        raise StepFailed("parity gate failed: " + "; ".join(g.describe() for g in failed))


def deploy_and_gate(targets: list[tuple[str, str]], onnx_file: Path, out_dir: Path, dataset_dir: str | Path, model_cfg,
                    deploy_cfg, pytorch: dict, allowed: dict[str, float], calibration_images: int,
                    previous: Path | None = None) -> tuple[dict[str, dict], list[Gate]]:
    """Build every (backend, precision) of ``targets`` from ``onnx_file`` into ``out_dir/<backend>-<precision>/``,
    evaluate each, and gate it against ``pytorch``'s metrics. Int8 targets share one calibration set of
    ``calibration_images`` train images. ``previous``: an earlier output whose per-target caches may be reused.
    Writes ``out_dir/gates.json``; returns the metrics per target and the gates (enforcing is the caller's)."""
    settings = deploy_cfg.get("deploy_backends", {})
    shapes = settings.get("input_shapes")
    calibration, metrics, gates = None, {}, []
    for name, precision in tqdm(targets, desc="deploy targets", unit="target"):
        tag = f"{name}-{precision}"
        backend = get_backend(name)
        if precision == "int8" and calibration is None:
            calibration = calibration_set(dataset_dir, model_cfg, deploy_cfg, calibration_images)
        backend.build(onnx_file, out_dir / tag, precision, calibration, shapes, settings.get(name, {}),
                      cache_dir=previous / tag if previous and (previous / tag).is_dir() else None)
        runner = backend.load(out_dir / tag)
        metrics[tag] = evaluate_runner(runner, onnx_file, model_cfg, deploy_cfg, out_dir / ".eval" / tag)
        gates.append(gate(name, precision, metrics[tag], pytorch, allowed))
        print(gates[-1].describe(), flush=True)
    shutil.rmtree(out_dir / ".eval", ignore_errors=True)
    (out_dir / GATES_FILE).write_text(json.dumps(gates_report(gates), indent=2))
    return metrics, gates
