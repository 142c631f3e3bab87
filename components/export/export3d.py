"""The 3D half of export and benchmark: a voxel detector (PointPillars on an mmdet3d KITTI data root) through
mmdeploy's mmdet3d VoxelDetection task.

Voxelization stays outside the graph: the exported end2end.onnx takes one scan's pillars (``voxels``,
``num_points``, ``coors``) and outputs the head's raw maps (``cls_score0``, ``bbox_pred0``, ``dir_cls_pred0``).
A deployed 3D detector is three stages, the same for PyTorch and ONNX Runtime:

1. voxelization: the model's data preprocessor (mmdet3d's Det3DDataPreprocessor: mmcv's hard Voxelization with the
   model's voxel size, range and points per pillar);
2. network: the graph under a backend Runner, or PyTorch's pillar encoder, scatter, backbone, neck and head;
3. post-processing: the head's own ``predict_by_feat`` (anchor decoding, rotated NMS with the model's test_cfg).

Deploy targets: ONNX Runtime fp32 (the graph as exported) and int8 (its convolutions quantized, calibrated on
voxelized train scans: ``calibration_set``), both by default; the other backends' runners take one image input.
Export evaluates each target through mmdeploy's VoxelDetectionModel, which runs these three stages, in mmengine's
test loop with KittiMetric (admlops.backends.parity), and gates it on the class mean of KITTI's 3D AP40 at moderate
difficulty (strict IoU: Car 0.7, Pedestrian/Cyclist 0.5), allowed drop 1.0 AP point for fp32 and the int8
allowance (1.5) for int8 by default. The benchmark times the three stages apart (``staged``).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from admlops.backends.base import Calibration
from admlops.backends.calibration import check_count, spread
from admlops.backends.parity import KITTI_3D_AP40_MODERATE, MAX_DROP_3D
from admlops.components.evaluate.evaluate import run_kitti_test
from admlops.errors import InputError, UsageError
from admlops.mmconfig import kitti_infos

TASK = "voxel-detection"
STAGES = ("voxelization", "network", "post_processing")
OUTPUTS = ("cls_score0", "bbox_pred0", "dir_cls_pred0")
TIMED = ("per call, one scan through three stages timed apart (and their sum): voxelization = the model's data "
         "preprocessor (mmcv hard Voxelization + batch index); network = the exported graph under the backend "
         "(input numpy conversion included), for PyTorch eager the model's pillar encoder, scatter, backbone, neck and "
         "head under torch.inference_mode; post-processing = the head's predict_by_feat (anchor decoding + rotated "
         "NMS with the model's test_cfg). Loading the scan and the test pipeline's range filter run once before and "
         "are not timed. One process per row, one call at a time.")


class VoxelDetection:
    """Export's settings for a KITTI voxel detector (components/export/export.py dispatches on the config)."""

    deploy_config = "voxel-detection_onnxruntime_dynamic"
    codebase = "mmdet3d"
    targets = "onnxruntime:fp32,onnxruntime:int8"
    max_drop = MAX_DROP_3D
    metric = KITTI_3D_AP40_MODERATE
    run_test = staticmethod(run_kitti_test)

    @staticmethod
    def check_targets(chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if unsupported := [f"{b}:{p}" for b, p in chosen if b != "onnxruntime"]:
            raise UsageError(f"deploy targets {', '.join(unsupported)} are not available for a 3D voxel detector: "
                             "its graph takes three inputs, which the onnxruntime runners (fp32, int8) serve")
        return chosen

    @staticmethod
    def prepare(deploy_cfg, model_cfg, dataset_dir) -> str:
        """The first val scan, which the export traces on."""
        return split_scans(model_cfg, dataset_dir)[0]

    @staticmethod
    def calibration_set(dataset_dir, model_cfg, deploy_cfg, count: int, split: str = "train") -> Calibration:
        """Int8 calibration: ``count`` scans evenly spaced over the train split, through the model's test pipeline
        and voxelizer (its data preprocessor): per scan the graph's inputs by name, as the runner takes them."""
        from mmengine.registry import MODELS

        check_count(count)
        files = spread(split_scans(model_cfg, dataset_dir, split), count)
        points, samples = load_scans(model_cfg, files)
        voxelize = voxelizer(MODELS.build(model_cfg.model.data_preprocessor))
        batches = [{k: v.numpy() for k, v in voxelize(p, s).items()} for p, s in zip(points, samples, strict=True)]
        return Calibration(str(kitti_infos(Path(dataset_dir).resolve(), split)), batches, files)

    @staticmethod
    def summary(metrics: dict[str, dict], pytorch: dict) -> dict:
        """metrics.json: PyTorch's KITTI numbers, every target's, the gated metric and ONNX Runtime's difference."""
        metric = KITTI_3D_AP40_MODERATE
        out = {"pytorch": pytorch, "backends": metrics, "gated_metric": metric.key}
        if "onnxruntime-fp32" in metrics:
            out["onnxruntime"] = metrics["onnxruntime-fp32"]
            out["AP_difference"] = metric.of(out["onnxruntime"]) - metric.of(pytorch)
        return out


def is_voxel_deploy(deploy_cfg) -> bool:
    return deploy_cfg.codebase_config.type == VoxelDetection.codebase


def split_scans(model_cfg, dataset_dir, split: str = "val", max_scans: int = 0) -> list[str]:
    """A split's LiDAR scans (the files the test pipeline loads); an InputError naming the infos if none."""
    import pickle

    infos = kitti_infos(Path(dataset_dir).resolve(), split)
    frames = pickle.loads(infos.read_bytes())["data_list"]
    if max_scans:
        frames = frames[:max_scans]
    if not frames:
        use = "to trace, evaluate or benchmark the export on" if split == "val" else "to calibrate int8 on"
        raise InputError(infos, f"the {split} split is empty: no scans {use}")
    ds = model_cfg.test_dataloader.dataset
    return [str(Path(ds.data_root) / ds.data_prefix["pts"] / f["lidar_points"]["lidar_path"]) for f in frames]


def load_scans(model_cfg, files: list[str]) -> tuple[np.ndarray, list]:
    """Each scan through the test pipeline (load, range filter): the points (an object array of [N, 4] float32,
    one per scan) and the data samples (their metainfo: box type, for the decoding)."""
    from mmdet3d.structures import get_box_type
    from mmdet3d.utils import register_all_modules
    from mmengine.dataset import Compose
    from tqdm import tqdm

    register_all_modules()
    pipeline = Compose(model_cfg.test_dataloader.dataset.pipeline)
    box_type, box_mode = get_box_type(model_cfg.test_dataloader.dataset.get("box_type_3d", "LiDAR"))
    points, samples = np.empty(len(files), dtype=object), []
    for i, f in enumerate(tqdm(files, desc="load scans", unit="scan")):
        data = pipeline(dict(lidar_points=dict(lidar_path=f), box_type_3d=box_type, box_mode_3d=box_mode))
        points[i] = data["inputs"]["points"].numpy()
        samples.append(data["data_samples"])
    return points, samples


def voxelizer(preprocessor):
    """points [N, 4] + data sample -> the graph's inputs (torch tensors), through ``preprocessor`` (the model's
    Det3DDataPreprocessor)."""
    import torch

    def voxelize(points: np.ndarray, sample) -> dict:
        data = preprocessor({"inputs": {"points": [torch.from_numpy(points)]}, "data_samples": [sample]}, False)
        return {k: data["inputs"]["voxels"][k] for k in ("voxels", "num_points", "coors")}

    return voxelize


def decoder(head, test_cfg):
    """The head's raw maps (name -> tensor or array) + data sample -> InstanceData (bboxes_3d, scores_3d, labels_3d)."""
    import torch

    def decode(maps: dict, sample):
        level = [torch.as_tensor(maps[name]) for name in OUTPUTS]
        return head.predict_by_feat(*([x] for x in level), batch_input_metas=[sample.metainfo], cfg=test_cfg)[0]

    return decode


def torch_network(model):
    """The PyTorch model's network on the graph's inputs: the head's raw maps by output name. The inputs are
    cloned: mmdet3d's legacy PillarFeatureNet writes its pillar-centre offsets into the voxels it is given."""
    import torch

    def network(voxels: dict) -> dict:
        with torch.inference_mode():
            maps = model._forward({"voxels": {k: v.clone() for k, v in voxels.items()}})
        return dict(zip(OUTPUTS, (level[0] for level in maps), strict=True))

    return network


def runner_network(runner):
    """A backend Runner (admlops.backends: the graph's inputs by name as numpy) on the graph's inputs."""
    def network(voxels: dict) -> dict:
        return runner({k: v.numpy() for k, v in voxels.items()})

    return network


def staged(voxelize, network, decode, samples: list):
    """predict(points of one scan, [index]) -> [InstanceData], timing each stage into ``predict.stages``."""
    stages = {name: [] for name in STAGES}

    def predict(batch: np.ndarray, idx: list[int]):
        (points,), (i,) = batch, idx
        t0 = time.perf_counter()
        voxels = voxelize(points, samples[i])
        t1 = time.perf_counter()
        maps = network(voxels)
        t2 = time.perf_counter()
        result = decode(maps, samples[i])
        t3 = time.perf_counter()
        for name, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            stages[name].append(seconds)
        return [result]

    predict.stages = stages
    return predict


def detections(out) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per scan: boxes with scores [k, 8] (x, y, z, dx, dy, dz, yaw, score) and labels [k]."""
    import torch

    return [(torch.cat([p.bboxes_3d.tensor, p.scores_3d[:, None]], 1).numpy(), p.labels_3d.numpy()) for p in out]


def _torch_threads(spec: dict) -> int:
    import torch

    if spec["threads"]:  # voxelization and NMS are torch ops in every row
        torch.set_num_threads(spec["threads"])
    return torch.get_num_threads()


def load_pytorch(spec: dict):
    """Benchmark worker: PyTorch eager, the model's own data preprocessor, network and head."""
    import pickle

    from mmdet3d.apis import init_model

    from admlops import compat

    compat.apply()
    threads = _torch_threads(spec)
    samples = pickle.loads(Path(spec["samples"]).read_bytes())
    model = init_model(spec["model_config"], spec["checkpoint"], device="cpu")
    predict = staged(voxelizer(model.data_preprocessor), torch_network(model),
                     decoder(model.bbox_head, model.test_cfg), samples)
    return predict, detections, threads


def load_backend(spec: dict):
    """Benchmark worker: a backend Runner of the graph, with the data preprocessor and head built from the model
    config (neither has learned parameters the stages use), as mmdeploy's VoxelDetectionModel builds them."""
    import pickle

    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import MODELS

    from admlops.backends import get_backend

    register_all_modules()
    _torch_threads(spec)
    cfg = Config.fromfile(spec["model_config"])
    samples = pickle.loads(Path(spec["samples"]).read_bytes())
    runner = get_backend(spec["runtime"]).load(Path(spec["artifact_dir"]), threads=spec["threads"])
    predict = staged(voxelizer(MODELS.build(cfg.model.data_preprocessor)), runner_network(runner),
                     decoder(MODELS.build(cfg.model.bbox_head), cfg.model.test_cfg), samples)
    return predict, detections, spec["threads"] or None
