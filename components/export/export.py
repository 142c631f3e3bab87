"""Export a trained mmdet model to an end-to-end ONNX graph with mmdeploy, build the CPU backends from it and gate
each against PyTorch.

Output layout (the ONNX ``Model`` artifact that benchmark and export-trt read)::

    end2end.onnx      input: normalised NCHW float32; outputs: dets [N, K, 5] (x1, y1, x2, y2, score), labels [N, K]
    deploy.py         the mmdeploy deploy config used (post-processing and input shapes synced with the model)
    model.py          the model config (its test pipeline is the preprocessing the ONNX model expects)
    <backend>-<precision>/   each deploy target's artifact and build.json (admlops.backends), e.g. openvino-int8/
    metrics.json      COCO metrics on the val split: PyTorch's, every target's ("backends"), and for ONNX Runtime
                      fp32 the historical keys ("onnxruntime", "mAP50_difference", "mAP_difference")
    gates.json        the parity gate of every target (admlops.backends.parity)

A target whose mAP@0.5 drop exceeds its allowance fails the step (StepFailed, nothing published) unless
``enforce_gates`` is off, in which case gates.json records the failure for whoever decides next (register).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from admlops import compat
from admlops.backends import parse_targets
from admlops.backends.parity import MAX_DROP_FLOAT, MAX_DROP_INT8, allowances, deploy_and_gate, enforce
from admlops.components.evaluate.evaluate import run_coco_test
from admlops.errors import InputError
from admlops.localfs import atomic_dir
from admlops.mmconfig import use_dataset

# ONNX Runtime int8 (onnxruntime:int8) passes its gate but runs slower than ONNX Runtime fp32 on the CPUs measured
# (its QDQ convolutions cannot fuse between RTMDet's SiLU activations), and OpenVINO bf16 is a precision of its own:
# both are targets to ask for, not defaults. Figures: admlops/backends/README.md.
DEFAULT_TARGETS = "onnxruntime:fp32,openvino:fp32,openvino:int8"
CALIBRATION_IMAGES = 32


def sync_post_processing(deploy_cfg, model_cfg) -> None:
    """Make the exported NMS use the model's own test_cfg, so ONNX and PyTorch decode alike."""
    test_cfg = model_cfg.model.test_cfg
    pp = deploy_cfg.codebase_config.post_processing
    pp.score_threshold = test_cfg.score_thr
    pp.confidence_threshold = test_cfg.score_thr
    pp.iou_threshold = test_cfg.nms.iou_threshold
    pp.pre_top_k = test_cfg.nms_pre
    pp.keep_top_k = test_cfg.max_per_img
    pp.max_output_boxes_per_class = test_cfg.max_per_img


def sync_input_shapes(deploy_cfg, model_cfg) -> None:
    """Give the deploy targets' input shapes the model's input size when its test pipeline pads to a fixed one."""
    pad = next((t for t in model_cfg.test_pipeline if t.type == "Pad" and t.get("size")), None)
    shapes = deploy_cfg.get("deploy_backends", {}).get("input_shapes", {})
    if pad is None:
        return
    width, height = pad.size
    for limits in shapes.values():
        for key in ("min_shape", "opt_shape", "max_shape"):
            limits[key] = [*limits[key][:2], height, width]


def load_configs(deploy_config: str | Path, model_config: str | Path):
    from mmengine.config import Config

    from admlops.configs import CONFIG_DIR

    path = Path(deploy_config)
    if path.suffix != ".py":
        path = CONFIG_DIR / "deploy" / f"{deploy_config}.py"
    return Config.fromfile(str(path)), Config.fromfile(str(model_config))


def pytorch_metrics_of(model_cfg, model_dir: Path, work_dir: Path) -> dict:
    """The PyTorch model's COCO metrics on the val split (what evaluate reports), when the caller has none."""
    cfg = model_cfg.copy()
    cfg.load_from = str(model_dir / "model.pth")
    return run_coco_test(cfg, work_dir)


def summary(metrics: dict[str, dict], pytorch: dict) -> dict:
    """metrics.json: PyTorch's numbers, every target's, and ONNX Runtime fp32's under the historical keys."""
    out = {"pytorch": pytorch, "backends": metrics}
    if "onnxruntime-fp32" in metrics:
        onnx = metrics["onnxruntime-fp32"]
        out["onnxruntime"] = onnx
        out["mAP50_difference"] = onnx["bbox"]["bbox_mAP_50"] - pytorch["bbox"]["bbox_mAP_50"]
        out["mAP_difference"] = onnx["bbox"]["bbox_mAP"] - pytorch["bbox"]["bbox_mAP"]
    return out


def export(
    dataset_dir: str | Path,
    model_dir: str | Path,
    out: str | Path,
    deploy_config: str = "detection_onnxruntime_dynamic",
    pytorch_metrics: dict | None = None,
    targets: str = DEFAULT_TARGETS,
    max_drop_float: float = MAX_DROP_FLOAT,
    max_drop_int8: float = MAX_DROP_INT8,
    calibration_images: int = CALIBRATION_IMAGES,
    enforce_gates: bool = True,
) -> dict:
    """Export ``model_dir`` (train's output) to ONNX under ``out``, build and evaluate every deploy target
    (``"backend:precision,..."``) on the val split, and gate each against PyTorch (``pytorch_metrics``: evaluate's
    metrics.json; evaluated here when None). Returns metrics.json's content."""
    chosen = parse_targets(targets)  # an unknown name fails before any work
    allowed = allowances(max_drop_float, max_drop_int8)
    compat.apply()
    from mmdeploy.apis import torch2onnx

    model_dir = Path(model_dir)
    deploy_cfg, model_cfg = load_configs(deploy_config, model_dir / "config.py")
    use_dataset(model_cfg, dataset_dir)
    sync_post_processing(deploy_cfg, model_cfg)
    sync_input_shapes(deploy_cfg, model_cfg)
    val_file = Path(dataset_dir) / "annotations" / "val.json"
    val = json.loads(val_file.read_text())
    if not val["images"]:
        raise InputError(val_file, "the val split is empty: nothing to trace or evaluate the export on")
    sample = str(Path(dataset_dir) / val["images"][0]["file_name"])
    with atomic_dir(out) as tmp:
        deploy_cfg.dump(str(tmp / "deploy.py"))
        model_cfg.dump(str(tmp / "model.py"))
        torch2onnx(sample, str(tmp), "end2end.onnx", deploy_cfg, model_cfg, str(model_dir / "model.pth"), device="cpu")
        if pytorch_metrics is None:
            pytorch_metrics = pytorch_metrics_of(model_cfg, model_dir, tmp / ".eval-pytorch")
            shutil.rmtree(tmp / ".eval-pytorch")
        metrics, gates = deploy_and_gate(chosen, tmp / "end2end.onnx", tmp, dataset_dir, model_cfg, deploy_cfg,
                                         pytorch_metrics, allowed, calibration_images, previous=Path(out))
        result = summary(metrics, pytorch_metrics)
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2))
        if enforce_gates:
            enforce(gates)
    return result
