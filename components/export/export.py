"""Export a trained model to ONNX with mmdeploy, build the deploy targets from it and gate each against PyTorch.

One command for both kinds of model, chosen by the model's config: a 2D mmdet detector on a converted dataset
(mmdeploy's ObjectDetection task: an end-to-end graph with NMS, gated on COCO mAP@0.5), or a 3D voxel detector
(PointPillars) on an mmdet3d KITTI data root (mmdeploy's VoxelDetection task, components/export/export3d.py:
voxelization and decoding outside the graph, gated on KITTI 3D AP40 moderate).

Output layout (the ONNX ``Model`` artifact that benchmark and export-trt read)::

    end2end.onnx      2D: input normalised NCHW float32; outputs dets [N, K, 5] (x1, y1, x2, y2, score), labels [N, K].
                      3D: inputs voxels [V, P, 4], num_points [V], coors [V, 4]; outputs the head's raw maps
    deploy.py         the mmdeploy deploy config used (post-processing and input shapes synced with the model)
    model.py          the model config (its test pipeline is the preprocessing the ONNX model expects)
    <backend>-<precision>/   each deploy target's artifact and build.json (admlops.backends), e.g. openvino-int8/
    metrics.json      COCO (2D) or KITTI (3D) metrics on the val split: PyTorch's, every target's ("backends"), and
                      for ONNX Runtime fp32 its own key and the difference ("mAP50_difference"; 3D "AP_difference")
    gates.json        the parity gate of every target (admlops.backends.parity)

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
from admlops.backends import parse_targets
from admlops.backends.calibration import CALIBRATION_IMAGES, calibration_set
from admlops.backends.parity import COCO_MAP50, MAX_DROP_FLOAT, MAX_DROP_INT8, allowances, deploy_and_gate, enforce
from admlops.components.evaluate.evaluate import run_coco_test
from admlops.configs import resolve
from admlops.components.export.export3d import VoxelDetection
from admlops.errors import InputError, UsageError
from admlops.localfs import atomic_dir
from admlops.mmconfig import KITTI_DATASET, dataset_type, use_dataset

# The 2D defaults: ONNX Runtime fp32 (the reference runtime) and OpenVINO fp32 and int8 (the fastest CPU target).
# ONNX Runtime int8 (onnxruntime:int8) and OpenVINO bf16 are targets to ask for: each one more build and val-split
# evaluation, and neither is the fastest. Figures: admlops/backends/README.md.
DEFAULT_TARGETS = "onnxruntime:fp32,openvino:fp32,openvino:int8"


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
    shapes = deploy_cfg.get("build_settings", {}).get("input_shapes", {})
    if pad is None:
        return
    width, height = pad.size
    for limits in shapes.values():
        for key in ("min_shape", "opt_shape", "max_shape"):
            limits[key] = [*limits[key][:2], height, width]


def load_config(kind: str, name_or_path: str | Path):
    """A config of ``kind`` (configs/<kind>/ name or a path; train's config.py for a model) as an mmengine Config."""
    from mmengine.config import Config

    if kind == "models" and not Path(name_or_path).is_file():
        raise InputError(name_or_path, "missing: export reads train's output directory (model.pth + config.py)")
    return Config.fromfile(str(resolve(kind, name_or_path)))


def load_configs(deploy_config: str | Path, model_config: str | Path):
    return load_config("deploy", deploy_config), load_config("models", model_config)


def pytorch_metrics_of(model_cfg, model_dir: Path, work_dir: Path, run_test=run_coco_test) -> dict:
    """The PyTorch model's metrics on the val split (what evaluate reports), when the caller has none."""
    cfg = model_cfg.copy()
    cfg.load_from = str(model_dir / "model.pth")
    return run_test(cfg, work_dir)


def summary(metrics: dict[str, dict], pytorch: dict) -> dict:
    """metrics.json: PyTorch's numbers, every target's, and ONNX Runtime fp32's under the historical keys."""
    out = {"pytorch": pytorch, "backends": metrics}
    if "onnxruntime-fp32" in metrics:
        onnx = metrics["onnxruntime-fp32"]
        out["onnxruntime"] = onnx
        out["mAP50_difference"] = onnx["bbox"]["bbox_mAP_50"] - pytorch["bbox"]["bbox_mAP_50"]
        out["mAP_difference"] = onnx["bbox"]["bbox_mAP"] - pytorch["bbox"]["bbox_mAP"]
    return out


class ObjectDetection:
    """Export's settings for a 2D mmdet detector (VoxelDetection, in export3d.py, is the 3D one)."""

    deploy_config = "detection_onnxruntime_dynamic"
    codebase = "mmdet"
    targets = DEFAULT_TARGETS
    max_drop = MAX_DROP_FLOAT
    metric = COCO_MAP50
    run_test = staticmethod(run_coco_test)
    summary = staticmethod(summary)
    calibration_set = staticmethod(calibration_set)

    @staticmethod
    def check_targets(chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return chosen

    @staticmethod
    def prepare(deploy_cfg, model_cfg, dataset_dir) -> str:
        """Sync the deploy config with the model; the first val image, which the export traces on."""
        sync_post_processing(deploy_cfg, model_cfg)
        sync_input_shapes(deploy_cfg, model_cfg)
        val_file = Path(dataset_dir) / "annotations" / "val.json"
        val = json.loads(val_file.read_text())
        if not val["images"]:
            raise InputError(val_file, "the val split is empty: nothing to trace or evaluate the export on")
        return str(Path(dataset_dir) / val["images"][0]["file_name"])


def task_of(model_cfg):
    """ObjectDetection or VoxelDetection, by the dataset the model's config reads."""
    kind = dataset_type(model_cfg)
    if kind == KITTI_DATASET:
        return VoxelDetection
    if kind != "CocoDataset":
        raise UsageError(f"export of a model that reads {kind} is not supported: it exports 2D detectors "
                         f"(CocoDataset) and 3D voxel detectors on KITTI ({KITTI_DATASET})")
    return ObjectDetection


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
    model kind's (2D: detection_onnxruntime_dynamic, DEFAULT_TARGETS, 0.5 mAP@0.5 points; 3D:
    voxel-detection_onnxruntime_dynamic, onnxruntime:fp32 and int8, 1.0 KITTI AP points). ``gate_floor``: the
    least PyTorch must reach on the gated metric for the gates to mean anything (None or negative: the model kind's,
    parity.Metric.floor). Returns metrics.json's content."""
    model_dir = Path(model_dir)
    model_cfg = load_config("models", model_dir / "config.py")
    task = task_of(model_cfg)
    chosen = task.check_targets(parse_targets(targets or task.targets))  # an unknown name fails before any work
    allowed = allowances(task.max_drop if max_drop_float is None else max_drop_float, max_drop_int8)
    metric = task.metric if gate_floor is None or gate_floor < 0 else replace(task.metric, floor=gate_floor)
    deploy_cfg = load_config("deploy", deploy_config or task.deploy_config)
    if deploy_cfg.codebase_config.type != task.codebase:
        raise InputError(deploy_cfg.filename, f"a deploy config for mmdeploy's {deploy_cfg.codebase_config.type} "
                         f"codebase, but the model is a {task.__name__} model ({task.codebase}): use "
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
            pytorch_metrics = pytorch_metrics_of(model_cfg, model_dir, tmp / ".eval-pytorch", task.run_test)
            shutil.rmtree(tmp / ".eval-pytorch")
        metrics, gates = deploy_and_gate(chosen, tmp / "end2end.onnx", tmp, dataset_dir, model_cfg, deploy_cfg,
                                         pytorch_metrics, allowed, calibration_images, previous=Path(out),
                                         metric=metric, calibrate=task.calibration_set)
        result = task.summary(metrics, pytorch_metrics)
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2))
        if enforce_gates:
            enforce(gates)
    return result
