"""3D voxel detection: an mmdet3d LiDAR voxel detector (PointPillars) on an mmdet3d KITTI data root.

* **evaluation**: mmdet3d's KittiMetric in mmengine's test loop; the record holds per class 3D, BEV and 2D AP at 11
  and 40 recall points for each difficulty, at KITTI's IoU thresholds (``strict``: 0.7 Car, 0.5
  Pedestrian/Cyclist) and the looser ones, in percent (``kitti_metrics``); the gated metric is the class mean of
  the 3D AP40 at moderate difficulty and the strict IoU (floor 1 AP point: a model that learned one class of three
  reaches it, one that learned none does not).
* **export**: mmdeploy's mmdet3d VoxelDetection task. Voxelization stays outside the graph: end2end.onnx takes one
  scan's pillars (``voxels``, ``num_points``, ``coors``) and outputs the head's raw maps (``cls_score0``,
  ``bbox_pred0``, ``dir_cls_pred0``). A deployed 3D detector is three stages, the same for PyTorch and a backend:

  1. voxelization: the model's data preprocessor (mmdet3d's Det3DDataPreprocessor: mmcv's hard Voxelization with
     the model's voxel size, range and points per pillar);
  2. network: the graph under a backend Runner, or PyTorch's pillar encoder, scatter, backbone, neck and head;
  3. post-processing: the head's own ``predict_by_feat`` (anchor decoding, rotated NMS with the model's test_cfg).

  Deploy targets: ONNX Runtime fp32 (the graph as exported) and int8 (its convolutions quantized, calibrated on
  voxelized train scans: ``calibration_set``), both by default; the other backends' runners take one image input.
  The parity gates run mmdeploy's VoxelDetectionModel (these three stages) in the test loop; allowed drop 1.0 AP
  point for fp32 and the int8 allowance (1.5) for int8 by default.
* **benchmark**: one scan per call, the three stages timed apart (``staged``); the scans loaded and range filtered
  once, untimed; accuracy is the export's parity gate (KITTI AP on the whole val split).
"""
from __future__ import annotations

import pickle
import re
import time
from pathlib import Path

import numpy as np

from admlops.backends.base import Calibration
from admlops.backends.calibration import check_count, spread
from admlops.errors import InputError, UsageError
from admlops.mmconfig import KITTI_DATASET, kitti_infos, use_dataset
from admlops.tasks.base import BenchInputs, Metric, Task, log_finite, number, register, table

KITTI_3D_AP40_MODERATE = Metric("mAP_3D_AP40_moderate", "KITTI 3D AP40 moderate (class mean, strict IoU)",
                                ("headline", "mAP_3D_AP40_moderate"), 1.0, "points (AP in percent)", 1.0)
MAX_DROP_3D = 1.0  # default allowed KITTI AP drop, points, of a 3D export's fp32 target
KITTI_KEY = re.compile(r"/pred_instances_3d/KITTI/(?P<cls>.+?)_(?P<metric>(?:3D|BEV|2D)_AP(?:11|40)_[a-z_]+)$")
STAGES = ("voxelization", "network", "post_processing")
OUTPUTS = ("cls_score0", "bbox_pred0", "dir_cls_pred0")
TIMED = ("per call, one scan through three stages timed apart (and their sum): voxelization = the model's data "
         "preprocessor (mmcv hard Voxelization + batch index); network = the exported graph under the backend "
         "(input numpy conversion included), for PyTorch eager the model's pillar encoder, scatter, backbone, neck and "
         "head under torch.inference_mode; post-processing = the head's predict_by_feat (anchor decoding + rotated "
         "NMS with the model's test_cfg). Loading the scan and the test pipeline's range filter run once before and "
         "are not timed. One process per row, one call at a time.")
DIFFICULTIES = ("easy", "moderate", "hard")
KINDS = ("3D", "BEV", "2D")
IOUS = {  # mmdet3d's kitti_eval: min overlaps (Car, Pedestrian, Cyclist) per threshold set
    "strict": "IoU 0.7 Car, 0.5 Pedestrian and Cyclist (KITTI's benchmark)",
    "loose": "3D and BEV IoU 0.5 Car, 0.25 Pedestrian and Cyclist; 2D as strict",
}


def kitti_metrics(raw: dict[str, float]) -> dict:
    """KittiMetric's flat results (``Kitti metric/pred_instances_3d/KITTI/Car_3D_AP40_moderate_strict``: ...) as
    ``per_class`` (``{"Car": {"3D_AP40_moderate_strict": ...}}``), ``overall`` (the class mean at the strict
    thresholds) and ``headline``: KITTI's ranking numbers, AP40 at moderate difficulty and the strict IoU."""
    per_class: dict[str, dict[str, float]] = {}
    for key, value in raw.items():
        if match := KITTI_KEY.search(key):
            per_class.setdefault(match["cls"], {})[match["metric"]] = float(value)
    overall = per_class.pop("Overall", {})
    headline = {f"{cls}_{kind}_AP40_moderate": ap[f"{kind}_AP40_moderate_strict"]
                for cls, ap in per_class.items() for kind in KINDS}
    headline.update({f"mAP_{kind}_AP40_moderate": overall[f"{kind}_AP40_moderate"]
                     for kind in KINDS if f"{kind}_AP40_moderate" in overall})
    return {"headline": headline, "per_class": per_class, "overall": overall}


def split_scans(model_cfg, dataset_dir, split: str = "val", max_scans: int = 0) -> list[str]:
    """A split's LiDAR scans (the files the test pipeline loads); an InputError naming the infos if none."""
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


@register
class VoxelDetection(Task):
    name = "voxel-detection"
    description = f"3D voxel detector (mmdet3d, {KITTI_DATASET})"
    dataset = KITTI_DATASET
    metric = KITTI_3D_AP40_MODERATE
    val_key = "Kitti metric/pred_instances_3d/KITTI/Overall_3D_AP40_moderate"
    per_class_label = "3D AP40 moderate"
    deploy_config = "voxel-detection_onnxruntime_dynamic"
    codebase = "mmdet3d"
    targets = "onnxruntime:fp32,onnxruntime:int8"
    max_drop = MAX_DROP_3D
    qat_keep_float = ("bbox_head",)  # its convolutions write the graph's outputs: float in post-training int8 too
    input_unit = "scan"
    timed = TIMED
    worker_imports = ("torch", "mmdet3d.models", "mmdet3d.structures")  # every row: voxelizer and head
    pytorch_imports = ("mmdet3d.apis",)

    # ---- evaluation --------------------------------------------------------------------------------------------

    def prepare_test(self, cfg, work_dir: Path) -> None:
        """Detections in KITTI's evaluation format are kept in ``work_dir/detections/pred_instances_3d.pkl``."""
        cfg.test_evaluator.pklfile_prefix = str(work_dir / "detections")

    def metrics(self, raw: dict, cfg, work_dir: Path) -> dict:
        return kitti_metrics(raw)

    def markdown(self, metrics: dict) -> str:
        columns = [(r, d) for r in (11, 40) for d in DIFFICULTIES]
        header = ["class", "metric"] + [f"AP{r} {d}" for r, d in columns]
        lines = [f"# KITTI evaluation ({metrics.get('split', 'val')} split)", "",
                 "AP in percent; KITTI ranks by AP40 at moderate difficulty and the strict IoU.", ""]
        lines += table(["class", "3D AP40 moderate", "BEV AP40 moderate", "2D AP40 moderate"],
                       [[c] + [number(metrics["headline"].get(f"{c}_{k}_AP40_moderate")) for k in KINDS]
                        for c in metrics["per_class"]]
                       + [["mean"] + [number(metrics["headline"].get(f"mAP_{k}_AP40_moderate")) for k in KINDS]])
        for iou, what in IOUS.items():
            rows = [[c, k] + [number(ap.get(f"{k}_AP{r}_{d}_{iou}")) for r, d in columns]
                    for c, ap in metrics["per_class"].items() for k in KINDS]
            if iou == "strict":  # KittiMetric's class means are at the strict thresholds
                rows += [["mean", k] + [number(metrics["overall"].get(f"{k}_AP{r}_{d}")) for r, d in columns]
                         for k in KINDS]
            lines += ["", f"## {iou.capitalize()} thresholds: {what}", ""] + table(header, rows)
        return "\n".join(lines) + "\n"

    def log_metrics(self, kfp_metrics, result: dict, prefix: str = "") -> None:
        """KITTI's ranking numbers (``headline``): per class 3D, BEV and 2D AP40 at moderate difficulty and the
        strict IoU, and their class means (``mAP_*``), in percent."""
        log_finite(kfp_metrics, result["headline"], prefix)

    def summary_lines(self, metrics: dict) -> list[str]:
        h, lines = metrics["headline"], []
        for cls in [*metrics["per_class"], "mean"]:
            key = "mAP_{}_AP40_moderate" if cls == "mean" else f"{cls}_{{}}_AP40_moderate"
            lines.append(f"KITTI AP40 moderate {cls:<10} 3D {h[key.format('3D')]:6.2f}  BEV {h[key.format('BEV')]:6.2f}  "
                         f"2D {h[key.format('2D')]:6.2f}")
        return lines

    def per_class(self, metrics: dict) -> dict[str, float]:
        return {cls: ap["3D_AP40_moderate_strict"] for cls, ap in metrics["per_class"].items()}

    # ---- export ------------------------------------------------------------------------------------------------

    def check_targets(self, chosen: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if unsupported := [f"{b}:{p}" for b, p in chosen if b != "onnxruntime"]:
            raise UsageError(f"deploy targets {', '.join(unsupported)} are not available for a 3D voxel detector: "
                             "its graph takes three inputs, which the onnxruntime runners (fp32, int8) serve")
        return chosen

    def prunable(self, model, cfg, dataset_dir):
        """The 2D part — backbone, neck and head — on the bird's-eye-view pseudo-image of the first val scan, as the
        pillar encoder and the scatter make it (they stay whole: their channels are the backbone's input)."""
        import copy

        import torch

        cfg = copy.deepcopy(cfg)
        use_dataset(cfg, dataset_dir)
        points, samples = load_scans(cfg, split_scans(cfg, dataset_dir, "val", 1))
        voxels = voxelizer(model.data_preprocessor)(points[0], samples[0])
        with torch.no_grad():  # cloned: the legacy pillar encoder writes into its input
            pillars = model.voxel_encoder(voxels["voxels"].clone(), voxels["num_points"], voxels["coors"])
            bev = model.middle_encoder(pillars, voxels["coors"], 1)
        return (lambda detector, x: detector.bbox_head(detector.neck(detector.backbone(x)))), bev

    def qat_forward(self):
        """The network (pillar encoder, scatter, backbone, neck, head) on one calibration scan's voxels, as the
        graph takes them (``calibration_set``); the pillar encoder and scatter have no convolutions to quantize."""
        import torch

        return lambda model, batch: model._forward({"voxels": {k: torch.from_numpy(v).clone() for k, v in batch.items()}})

    def prepare(self, deploy_cfg, model_cfg, dataset_dir) -> str:
        """The first val scan, which the export traces on."""
        return split_scans(model_cfg, dataset_dir)[0]

    def calibration_set(self, dataset_dir, model_cfg, deploy_cfg, count: int, split: str = "train") -> Calibration:
        """``count`` scans evenly spaced over the train split, through the model's test pipeline and voxelizer (its
        data preprocessor): per scan the graph's inputs by name, as the runner takes them."""
        from mmengine.registry import MODELS

        check_count(count)
        files = spread(split_scans(model_cfg, dataset_dir, split), count)
        points, samples = load_scans(model_cfg, files)
        voxelize = voxelizer(MODELS.build(model_cfg.model.data_preprocessor))
        batches = [{k: v.numpy() for k, v in voxelize(p, s).items()} for p, s in zip(points, samples, strict=True)]
        return Calibration(str(kitti_infos(Path(dataset_dir).resolve(), split)), batches, files)

    # ---- benchmark ---------------------------------------------------------------------------------------------

    def bench_inputs(self, dataset_dir: Path, export_dir: Path, max_inputs: int, batch_sizes: list[int]) -> BenchInputs:
        """The val scans' points and data samples (``load_scans``); one scan per call."""
        from mmengine.config import Config

        if batch_sizes != [1]:
            raise UsageError(f"a 3D voxel detector runs one scan per call (its graph is traced for batch 1): "
                             f"batch sizes must be 1, got {batch_sizes}")
        model_cfg = Config.fromfile(str(export_dir / "model.py"))
        use_dataset(model_cfg, dataset_dir)
        files = split_scans(model_cfg, dataset_dir, max_scans=max_inputs)
        inputs, samples = load_scans(model_cfg, files)
        sizes = [len(p) for p in inputs]
        return BenchInputs(files, inputs, samples, [f"{min(sizes)}-{max(sizes)} points", 4], lambda detections: None)

    def load_pytorch(self, spec: dict):
        """PyTorch eager: the model's own data preprocessor, network and head."""
        from mmdet3d.apis import init_model

        from admlops import compat

        compat.apply()
        threads = _torch_threads(spec)
        samples = pickle.loads(Path(spec["samples"]).read_bytes())
        model = init_model(spec["model_config"], spec["checkpoint"], device="cpu")
        predict = staged(voxelizer(model.data_preprocessor), torch_network(model),
                         decoder(model.bbox_head, model.test_cfg), samples)
        return predict, detections, threads

    def load_backend(self, spec: dict):
        """A backend Runner of the graph, with the data preprocessor and head built from the model config (neither
        has learned parameters the stages use), as mmdeploy's VoxelDetectionModel builds them."""
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
