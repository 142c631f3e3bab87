"""KFP component: mmdeploy ONNX export (end-to-end, with NMS) and its ONNX Runtime mAP."""
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from admlops.images import IMAGES


@dsl.component(base_image=IMAGES["cpu"], install_kfp_package=False)
def export(
    dataset: Input[Dataset],
    model: Input[Model],
    pytorch_report: Input[Artifact],
    deploy_config: str,
    onnx_model: Output[Model],
    metrics: Output[Metrics],
):
    """Export to ONNX and report the ONNX Runtime mAP next to PyTorch's."""
    import json
    from pathlib import Path

    from admlops.components.export.export import export as run
    from admlops.kfp_metrics import log_coco

    pytorch = json.loads((Path(pytorch_report.path) / "metrics.json").read_text())
    result = run(dataset.path, model.path, onnx_model.path, deploy_config, pytorch)
    log_coco(metrics, result["onnxruntime"], prefix="onnx_")
    metrics.log_metric("onnx_minus_pytorch_mAP50", round(result["mAP50_difference"], 4))
    onnx_model.metadata.update({"framework": "onnx", "runtime": "onnxruntime", "deploy_config": deploy_config})
