"""Export a trained model to ONNX with mmdeploy, build the deploy targets from it and gate each against PyTorch.

One command for every exportable kind of model: the model's task (admlops.tasks, from its config) names the
mmdeploy deploy config, the default targets, what the export traces on, how int8 calibrates and the gated metric
(a 2D mmdet detector: ObjectDetection, an end-to-end graph with NMS, gated on COCO mAP@0.5; a 3D voxel detector on
an mmdet3d KITTI data root: VoxelDetection, voxelization and decoding outside the graph, gated on KITTI 3D AP40
moderate).

Output layout (the ONNX ``Model`` artifact that benchmark and export-trt read)::

    end2end.onnx      the graph (2D: input normalised NCHW float32; outputs dets [N, K, 5], labels [N, K].
                      3D: inputs voxels [V, P, 4], num_points [V], coors [V, 4]; outputs the head's raw maps)
    deploy.py         the mmdeploy deploy config used (synced with the model by the task)
    model.py          the model config (its test pipeline is the preprocessing the ONNX model expects)
    <backend>-<precision>/   each deploy target's artifact and build.json (admlops.backends), e.g. openvino-int8/
    metrics.json      the task's export summary: PyTorch's record, every target's ("backends"), the gated metric,
                      and ONNX Runtime fp32's own key with its difference from PyTorch ("difference")
    gates.json        the parity gate of every target (admlops.backends.parity)

A quantization-aware trained model (``QuantizedDetector``, admlops/mmext/quantized.py) is an int8 model: its
end2end.onnx carries its convolutions' Q/DQ pairs (opset 13), its targets are int8 ones built from that graph as it
is (no calibration), and its gates compare them with its own (int8) PyTorch evaluation.

A target whose metric drop exceeds its allowance, or a PyTorch model below the gated metric's floor (its gates are
then not meaningful), fails the step (StepFailed, nothing published) unless ``enforce_gates`` is off, in which case
gates.json records it for whoever decides next (benchmark, register).
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from admlops import compat
from admlops.backends import parse_targets, quantized_targets
from admlops.backends.calibration import CALIBRATION_IMAGES
from admlops.backends.graphs import QUANT_OPSET
from admlops.backends.parity import MAX_DROP_INT8, allowances, deploy_and_gate, enforce
from admlops.configs import resolve
from admlops.errors import InputError
from admlops.localfs import atomic_dir
from admlops.mmconfig import use_dataset
from admlops.tasks import task_of


def load_config(kind: str, name_or_path: str | Path):
    """A config of ``kind`` (configs/<kind>/ name or a path; train's config.py for a model) as an mmengine Config."""
    from mmengine.config import Config

    if kind == "models" and not Path(name_or_path).is_file():
        raise InputError(name_or_path, "missing: export reads train's output directory (model.pth + config.py)")
    return Config.fromfile(str(resolve(kind, name_or_path)))


def load_configs(deploy_config: str | Path, model_config: str | Path):
    return load_config("deploy", deploy_config), load_config("models", model_config)


def export(
    dataset_dir: str | Path,
    model_dir: str | Path,
    out: str | Path,
    deploy_config: str | None = None,
    pytorch_metrics: dict | None = None,
    targets: str | None = None,
    max_drop_float: float | None = None,
    max_drop_int8: float = MAX_DROP_INT8,
    calibration_images: int = CALIBRATION_IMAGES,
    enforce_gates: bool = True,
    gate_floor: float | None = None,
) -> dict:
    """Export ``model_dir`` (train's output) to ONNX under ``out``, build and evaluate every deploy target
    (``"backend:precision,..."``) on the val split, and gate each against PyTorch (``pytorch_metrics``: evaluate's
    metrics.json; evaluated here when None). ``deploy_config``, ``targets`` and ``max_drop_float`` default to the
    model's task's (admlops.tasks: 2D detection_onnxruntime_dynamic, ONNX Runtime fp32 and OpenVINO fp32 and int8,
    0.5 mAP@0.5 points; 3D voxel-detection_onnxruntime_dynamic, ONNX Runtime fp32 and int8, 1.0 KITTI AP points).
    ``gate_floor``: the least PyTorch must reach on the gated metric for the gates to mean anything (None or
    negative: the task's, ``Task.metric.floor``). Returns metrics.json's content."""
    from admlops.mmext.quantized import is_quantized

    model_dir = Path(model_dir)
    model_cfg = load_config("models", model_dir / "config.py")
    task = task_of(model_cfg)
    task.check_exportable()
    chosen = task.check_targets(parse_targets(targets or task.targets))  # an unknown name fails before any work
    quantized = is_quantized(model_cfg)
    if quantized:  # an int8 model (admlops/mmext/quantized.py): its graph carries its Q/DQ, its targets are int8
        chosen = quantized_targets(chosen, explicit=bool(targets))
    allowed = allowances(task.max_drop if max_drop_float is None else max_drop_float, max_drop_int8)
    metric = task.metric if gate_floor is None or gate_floor < 0 else replace(task.metric, floor=gate_floor)
    deploy_cfg = load_config("deploy", deploy_config or task.deploy_config)
    if quantized:  # the first opset whose DequantizeLinear takes a per-channel axis
        deploy_cfg.onnx_config.opset_version = max(deploy_cfg.onnx_config.get("opset_version", 11), QUANT_OPSET)
    if deploy_cfg.codebase_config.type != task.codebase:
        raise InputError(deploy_cfg.filename, f"a deploy config for mmdeploy's {deploy_cfg.codebase_config.type} "
                         f"codebase, but the model is a {task.description} ({task.codebase}): use "
                         f"--deploy-config {task.deploy_config}")
    if pytorch_metrics is not None:
        task.metric.of(pytorch_metrics)  # a UsageError now if the gated metric is not there
    use_dataset(model_cfg, dataset_dir)
    sample = task.prepare(deploy_cfg, model_cfg, dataset_dir)
    compat.apply()
    from mmdeploy.apis import torch2onnx

    with atomic_dir(out) as tmp:
        deploy_cfg.dump(str(tmp / "deploy.py"))
        model_cfg.dump(str(tmp / "model.py"))
        torch2onnx(sample, str(tmp), "end2end.onnx", deploy_cfg, model_cfg, str(model_dir / "model.pth"), device="cpu")
        if pytorch_metrics is None:
            cfg = model_cfg.copy()
            cfg.load_from = str(model_dir / "model.pth")
            pytorch_metrics = task.run_test(cfg, tmp / ".eval-pytorch")  # what evaluate reports
            shutil.rmtree(tmp / ".eval-pytorch")
        metrics, gates = deploy_and_gate(chosen, tmp / "end2end.onnx", tmp, dataset_dir, model_cfg, deploy_cfg,
                                         pytorch_metrics, allowed, calibration_images, task, previous=Path(out),
                                         metric=metric)
        result = task.export_summary(metrics, pytorch_metrics)
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2))
        if enforce_gates:
            enforce(gates)
    return result
