"""TensorRT engines from export's ONNX graph, each gated against PyTorch on the val split (needs an NVIDIA GPU).

Reads export's output (``end2end.onnx``, ``deploy.py`` with the deploy targets' input shapes and TensorRT
settings, ``model.py``, and ``metrics.json`` for PyTorch's numbers) and writes::

    tensorrt-<precision>/   model.engine, build.json (TensorRT, CUDA and GPU versions, profile, per-layer output
                            types, engine size), timing.cache, the graph carrying the precision (fp16:
                            model.fp16.onnx; int8: the Q/DQ graph model.int8.onnx + qdq.json)
    metrics.json            PyTorch's COCO metrics and every engine's ("backends")
    gates.json              the parity gate of every engine (admlops.backends.parity)

A rebuild into the same ``out`` reuses what the engines published there before computed: the Q/DQ graph (same
graph and calibration data) and the timing cache (when TensorRT accepts it). Everything is built in a scratch directory and published at the end: a failed build or a
failed gate leaves no half-written engine behind.
"""
from __future__ import annotations

import json
from pathlib import Path

from admlops.backends import parse_targets
from admlops.backends.parity import MAX_DROP_FLOAT, MAX_DROP_INT8, allowances, deploy_and_gate, enforce
from admlops.backends.calibration import CALIBRATION_IMAGES
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir
from admlops.mmconfig import use_dataset
from admlops.tasks import task_of

DEFAULT_PRECISIONS = "fp16,int8"


def export_trt(
    dataset_dir: str | Path,
    onnx_dir: str | Path,
    out: str | Path,
    precisions: str = DEFAULT_PRECISIONS,
    pytorch_metrics: dict | None = None,
    max_drop_float: float = MAX_DROP_FLOAT,
    max_drop_int8: float = MAX_DROP_INT8,
    calibration_images: int = CALIBRATION_IMAGES,
    enforce_gates: bool = True,
) -> dict:
    """Build a TensorRT engine per precision (``"fp32,fp16,int8"``) from ``onnx_dir`` (export's output), evaluate
    and gate each against ``pytorch_metrics`` (default: the PyTorch metrics in export's metrics.json)."""
    from mmengine.config import Config

    names = [p.strip() for p in precisions.split(",") if p.strip()]
    if not names:
        raise UsageError(f"TensorRT precisions {precisions!r}: expected some of fp32, fp16, int8 (comma-separated)")
    targets = parse_targets(",".join(f"tensorrt:{p}" for p in names))
    allowed = allowances(max_drop_float, max_drop_int8)
    onnx_dir = Path(onnx_dir)
    for name in ("end2end.onnx", "deploy.py", "model.py"):
        if not (onnx_dir / name).is_file():
            raise InputError(onnx_dir / name, "missing: export-trt builds from export's output directory")
    if pytorch_metrics is None:
        try:
            pytorch_metrics = json.loads((onnx_dir / "metrics.json").read_text())["pytorch"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(onnx_dir / "metrics.json", "no PyTorch metrics to gate the engines against") from None
    deploy_cfg = Config.fromfile(str(onnx_dir / "deploy.py"))
    model_cfg = Config.fromfile(str(onnx_dir / "model.py"))
    task = task_of(model_cfg)
    use_dataset(model_cfg, dataset_dir)
    with atomic_dir(out) as tmp:
        metrics, gates = deploy_and_gate(targets, onnx_dir / "end2end.onnx", tmp, dataset_dir, model_cfg, deploy_cfg,
                                         pytorch_metrics, allowed, calibration_images, task, previous=Path(out))
        result = task.export_summary(metrics, pytorch_metrics)
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2))
        if enforce_gates:
            enforce(gates)
    return result
