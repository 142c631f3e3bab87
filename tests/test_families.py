"""The 2D model families (configs/models): each CPU-sized config trains on a converted dataset, exports through
mmdeploy, builds and gates on the CPU deploy targets and runs in the benchmark beside PyTorch; each full-size
config builds its model for the full KITTI resolution. Quality is measured in bench/, not here (a few iterations)."""
from __future__ import annotations

import json

import pytest
from mmengine.config import Config

from admlops.configs import resolve
from conftest import admlops

CPU_FAMILIES = ("yolox_tiny_kitti", "faster_rcnn_r50_fpn_kitti_cpu", "yolov3_mobilenetv2_kitti")
FULL_SIZE = {"rtmdet_s_kitti": (1280, 384), "yolox_s_kitti": (1280, 384), "faster_rcnn_r50_fpn_kitti": (1280, 384)}


@pytest.mark.parametrize("config", CPU_FAMILIES)
def test_a_family_trains_exports_gates_and_benchmarks_on_the_cpu_targets(config, coco_dir, tmp_path):
    """Two iterations (the path, not the quality), then export to ONNX Runtime and OpenVINO fp32 (gates at floor 0:
    the model has learned nothing) and a benchmark of two val images: every target gated and timed beside PyTorch,
    each runtime detecting on the same inputs. Parity is the gate's (mAP against PyTorch), not box counts: an
    untrained model's scores crowd the threshold, where two runtimes' (and two CPUs') rounding may keep a box more or
    less, and mmdeploy's YOLOX graph keeps every class above the threshold per box where mmdet keeps the best one."""
    model, onnx, bench = tmp_path / "model", tmp_path / "onnx", tmp_path / "bench"
    admlops("train", coco_dir, model, "--config", config, "--max-iters", 2, "--batch-size", 2)
    assert Config.fromfile(str(model / "config.py")).model.type == Config.fromfile(str(resolve("models", config))).model.type
    admlops("export", coco_dir, model, onnx, "--targets", "onnxruntime:fp32,openvino:fp32", "--gate-floor", 0,
            "--no-enforce")
    gates = json.loads((onnx / "gates.json").read_text())
    assert sorted((g["backend"], g["precision"]) for g in gates["gates"]) == [("onnxruntime", "fp32"), ("openvino", "fp32")]
    assert all(abs(g["drop_points"]) <= 0.5 for g in gates["gates"])
    admlops("benchmark", coco_dir, onnx, model, bench, "--backends", "onnxruntime:fp32,openvino:fp32", "--batch-sizes", 1,
            "--max-images", 2, "--warmup", 0)
    rows = {r["runtime"]: r for r in json.loads((bench / "benchmark.json").read_text())["rows"]}
    assert set(rows) == {"pytorch", "onnxruntime", "openvino"}
    assert rows["onnxruntime"]["boxes"] > 0 and rows["openvino"]["boxes"] > 0


@pytest.mark.parametrize("config", sorted(FULL_SIZE))
def test_a_full_size_config_builds_for_the_full_resolution(config, coco_dir):
    from mmengine.registry import MODELS, init_default_scope

    from admlops.mmconfig import use_dataset
    from admlops.tasks import task_of

    cfg = Config.fromfile(str(resolve("models", config)))
    use_dataset(cfg, coco_dir)
    size = FULL_SIZE[config]
    assert [t.size for t in cfg.test_pipeline if t.type == "Pad"] == [size]
    assert [t.size for t in cfg.test_dataloader.dataset.pipeline if t.type == "Pad"] == [size]
    assert [t.size for t in cfg.train_dataloader.dataset.pipeline if t.type == "Pad"] == [size]
    assert cfg.train_cfg.max_iters >= 10000 and task_of(cfg).name == "image-detection"
    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert (model.roi_head if hasattr(model, "roi_head") else model).bbox_head.num_classes == 3
