"""KFP component: mmdeploy ONNX export (end-to-end, with NMS), the CPU deploy targets built from it, and the parity
gate of each against PyTorch."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("export"), install_kfp_package=False)
def export(
    dataset: Input[Dataset],
    model: Input[Model],
    pytorch_report: Input[Artifact],
    deploy_config: str,
    onnx_model: Output[Model],
    metrics: Output[Metrics],
    targets: str,
    calibration_images: int,
    max_drop_float: float,
    max_drop_int8: float,
    enforce_gates: bool = True,
    gate_floor: float = -1.0,
):
    """Export to ONNX, build every deploy target (``backend:precision``, comma-separated), report each target's mAP
    next to PyTorch's and gate it (allowed mAP@0.5 drops in points: fp32/fp16/bf16 and int8; ``gate_floor``: the least
    PyTorch must reach for the gates to mean anything, negative = the model kind's)."""
    import json
    from pathlib import Path

    from admlops.components.export.export import export as run
    from admlops.kfp_metrics import log_evaluation

    pytorch = json.loads((Path(pytorch_report.path) / "metrics.json").read_text())
    result = run(dataset.path, model.path, onnx_model.path, deploy_config, pytorch, targets=targets,
                 max_drop_float=max_drop_float, max_drop_int8=max_drop_int8, calibration_images=calibration_images,
                 enforce_gates=enforce_gates, gate_floor=gate_floor)
    for tag, measured in result["backends"].items():  # the task's numbers: COCO for a 2D model, KITTI's for a 3D one
        log_evaluation(metrics, measured, prefix=f"{tag.replace('-', '_')}_")
    if "difference" in result:
        metrics.log_metric(f"onnxruntime_fp32_minus_pytorch_{result['gated_metric']}", round(result["difference"], 4))
    gates = json.loads((Path(onnx_model.path) / "gates.json").read_text())
    metrics.log_metric("gates_passed", float(gates["passed"]))
    onnx_model.metadata.update({"framework": "onnx", "runtime": "onnxruntime", "deploy_config": deploy_config,
                                "targets": targets, "gates_passed": gates["passed"]})
