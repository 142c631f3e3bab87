"""KFP component: TensorRT engines (fp16, int8, ...) from export's ONNX graph, each gated against PyTorch."""
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from admlops.images import image_for


@dsl.component(base_image=image_for("export-trt"), install_kfp_package=False)
def export_trt(
    dataset: Input[Dataset],
    onnx_model: Input[Model],
    engines: Output[Model],
    metrics: Output[Metrics],
    precisions: str,
    calibration_images: int,
    max_drop_float: float,
    max_drop_int8: float,
    enforce_gates: bool = True,
):
    """Build, evaluate and gate a TensorRT engine per precision (comma-separated: fp32, fp16, int8)."""
    import json
    from pathlib import Path

    from admlops.components.export_trt.export_trt import export_trt as run
    from admlops.kfp_metrics import log_evaluation

    result = run(dataset.path, onnx_model.path, engines.path, precisions, max_drop_float=max_drop_float,
                 max_drop_int8=max_drop_int8, calibration_images=calibration_images, enforce_gates=enforce_gates)
    for tag, measured in result["backends"].items():
        log_evaluation(metrics, measured, prefix=f"{tag.replace('-', '_')}_")
    gates = json.loads((Path(engines.path) / "gates.json").read_text())
    metrics.log_metric("gates_passed", float(gates["passed"]))
    first = next(iter(result["backends"]))
    env = json.loads((Path(engines.path) / first / "build.json").read_text())["environment"]
    engines.metadata.update({"framework": "tensorrt", "precisions": precisions, "gates_passed": gates["passed"],
                             "tensorrt": env["tensorrt"], "gpu": env["gpu"], "compute_capability": env["compute_capability"]})
