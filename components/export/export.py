"""Export a trained mmdet model to an end-to-end ONNX graph with mmdeploy and check it with ONNX Runtime.

Output layout (the ONNX ``Model`` artifact that benchmark reads)::

    end2end.onnx      input: normalised NCHW float32; outputs: dets [N, K, 5] (x1, y1, x2, y2, score), labels [N, K]
    deploy.py         the mmdeploy deploy config used (post-processing synced with the model)
    model.py          the model config (its test pipeline is the preprocessing the ONNX model expects)
    metrics.json      ONNX Runtime COCO metrics on the val split, PyTorch's beside them, and the difference
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from admlops import compat
from admlops.components.evaluate.evaluate import run_coco_test
from admlops.mmconfig import use_dataset
from admlops.localfs import atomic_dir


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


def load_configs(deploy_config: str | Path, model_config: str | Path):
    from mmengine.config import Config

    from admlops.configs import CONFIG_DIR

    path = Path(deploy_config)
    if path.suffix != ".py":
        path = CONFIG_DIR / "deploy" / f"{deploy_config}.py"
    return Config.fromfile(str(path)), Config.fromfile(str(model_config))


def export(
    dataset_dir: str | Path,
    model_dir: str | Path,
    out: str | Path,
    deploy_config: str = "detection_onnxruntime_dynamic",
    pytorch_metrics: dict | None = None,
) -> dict:
    """Export ``model_dir`` (train's output) to ONNX under ``out`` and evaluate it on the val split."""
    compat.apply()
    from mmdeploy.apis import torch2onnx
    from mmdeploy.apis.utils import build_task_processor

    model_dir = Path(model_dir)
    deploy_cfg, model_cfg = load_configs(deploy_config, model_dir / "config.py")
    use_dataset(model_cfg, dataset_dir)
    sync_post_processing(deploy_cfg, model_cfg)
    val = json.loads((Path(dataset_dir) / "annotations" / "val.json").read_text())
    if not val["images"]:
        raise ValueError(f"{dataset_dir}: the val split is empty; nothing to trace or evaluate the export on")
    sample = str(Path(dataset_dir) / val["images"][0]["file_name"])
    with atomic_dir(out) as tmp:
        deploy_cfg.dump(str(tmp / "deploy.py"))
        model_cfg.dump(str(tmp / "model.py"))
        torch2onnx(sample, str(tmp), "end2end.onnx", deploy_cfg, model_cfg, str(model_dir / "model.pth"), device="cpu")
        task = build_task_processor(model_cfg, deploy_cfg, "cpu")

        def onnx_runner(cfg):
            model = task.build_backend_model([str(tmp / "end2end.onnx")], task.update_data_preprocessor)
            return task.build_test_runner(model, cfg.work_dir)

        onnx = run_coco_test(model_cfg, tmp / "work", build_runner=onnx_runner)
        shutil.rmtree(tmp / "work")
        metrics = {"onnxruntime": onnx, "pytorch": pytorch_metrics}
        if pytorch_metrics:
            metrics["mAP50_difference"] = onnx["bbox"]["bbox_mAP_50"] - pytorch_metrics["bbox"]["bbox_mAP_50"]
            metrics["mAP_difference"] = onnx["bbox"]["bbox_mAP"] - pytorch_metrics["bbox"]["bbox_mAP"]
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
