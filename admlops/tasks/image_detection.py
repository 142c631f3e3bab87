"""2D image detection: an mmdet detector on a converted dataset (COCO layout: ``annotations/<split>.json``).

* **evaluation**: mmdet's CocoMetric in mmengine's test loop; the record holds the overall COCO numbers (``bbox``:
  mAP, mAP@0.5, mAP@0.75, small/medium/large) and, per class, AP and AP@0.5 (``per_class``, both from one COCOeval);
  the gated metric is mAP@0.5 (floor 0.05).
* **export**: mmdeploy's ObjectDetection task (``detection_onnxruntime_dynamic``): an end-to-end graph with NMS,
  input the normalised NCHW float32 batch, outputs ``dets`` [N, K, 5] and ``labels`` [N, K]; the exported NMS and
  input shapes synced with the model's test_cfg and pipeline; int8 calibrated on train images through the model's
  test pipeline and data preprocessor (``preprocessor``).
* **benchmark**: the val images preprocessed once (one padded shape, batched); every row's mAP@0.5 on them.
"""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from admlops import compat
from admlops.backends.base import Calibration
from admlops.backends.calibration import check_count, spread
from admlops.backends.parity import MAX_DROP_FLOAT
from admlops.errors import InputError
from admlops.mmconfig import dataset_meta, use_dataset
from admlops.tasks.base import BenchInputs, Metric, Task, log_finite, number, register, table

# CocoMetric's overall keys: it returns none of them when the model detected nothing on the whole split.
COCO_BBOX_KEYS = ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75", "bbox_mAP_s", "bbox_mAP_m", "bbox_mAP_l")
COCO_MAP50 = Metric("bbox_mAP_50", "mAP@0.5", ("bbox", "bbox_mAP_50"), 100.0, "points (mAP x 100)", 0.05)
TIMED = ("per call, one batch through the loaded model and nothing else: for a backend the exported graph "
         "(network + box decoding + NMS); for PyTorch eager mmdet's model.predict(rescale=False) (forward + the "
         "same decoding + NMS with the model's test_cfg), without the data preprocessor, on the same preprocessed "
         "tensors. Preprocessing is done once before and is not timed. One process per row, one call at a time.")


def per_class_ap(ann_file: str | Path, det_file: str | Path) -> dict[str, dict[str, float]]:
    """AP (IoU .50:.95) and AP50 per category from COCO ground truth and a COCO results file.

    mmdet's CocoMetric reports only the first per class; both come from the same COCOeval here.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(str(ann_file))
    dets = json.loads(Path(det_file).read_text())
    result = {}
    ev = None
    if dets:
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
    for k, cat_id in enumerate(sorted(gt.getCatIds())):
        name = gt.loadCats(cat_id)[0]["name"]
        if ev is None:
            result[name] = {"AP": 0.0, "AP50": 0.0}
            continue
        prec = ev.eval["precision"][:, :, k, 0, -1]  # [iou, recall, cat, area=all, maxdets=100]
        ap = float(np.mean(prec[prec > -1])) if (prec > -1).any() else float("nan")
        p50 = prec[0][prec[0] > -1]
        result[name] = {"AP": ap, "AP50": float(np.mean(p50)) if p50.size else float("nan")}
    return result


def head_levels(model_cfg) -> int:
    """How many feature levels the head that proposes candidates (a two-stage detector's RPN) predicts on."""
    head = model_cfg.model.get("rpn_head") or model_cfg.model.get("bbox_head") or {}
    generator = head.get("prior_generator") or head.get("anchor_generator") or {}
    return len(generator.get("strides") or head.get("strides") or [None])


def sync_post_processing(deploy_cfg, model_cfg) -> None:
    """Make the exported NMS use the model's own test_cfg, so ONNX and PyTorch decode alike. A two-stage detector's
    boxes are its second stage's (``rcnn``), its candidates its proposals' (``rpn``). PyTorch keeps ``nms_pre``
    candidates per feature level; mmdeploy's ``pre_top_k`` cuts the levels together, so it is ``nms_pre`` times
    the levels (at ``nms_pre`` alone a model with many low-score boxes lost candidates only in the export)."""
    test_cfg = model_cfg.model.test_cfg
    final, first = test_cfg.get("rcnn", test_cfg), test_cfg.get("rpn", test_cfg)
    pp = deploy_cfg.codebase_config.post_processing
    pp.score_threshold = final.score_thr
    pp.confidence_threshold = final.score_thr
    pp.iou_threshold = final.nms.iou_threshold
    pp.pre_top_k = first.nms_pre * head_levels(model_cfg)
    pp.keep_top_k = final.max_per_img
    pp.max_output_boxes_per_class = final.max_per_img


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


def split_images(dataset_dir: str | Path, split: str) -> tuple[Path, list[dict]]:
    """The annotation file of ``split`` in a converted dataset and its image records, in file order."""
    ann = Path(dataset_dir) / "annotations" / f"{split}.json"
    try:
        return ann, json.loads(ann.read_text())["images"]
    except FileNotFoundError:
        raise InputError(ann, f"missing: the dataset has no {split} split") from None
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(ann, f"not a COCO annotation file: {e}") from None


def preprocessor(model_cfg, deploy_cfg) -> Callable[[str | Path], tuple[np.ndarray, object]]:
    """A function: image file -> (float32 [1, 3, H, W], its data sample): the graph's input for that image, through
    the model's test pipeline and data preprocessor as mmdeploy's task processor applies them (decode, resize, pad,
    normalise), the preprocessing the PyTorch evaluation applies too."""
    compat.apply()
    from mmdeploy.apis.utils import build_task_processor
    from mmengine.registry import MODELS

    task = build_task_processor(model_cfg, deploy_cfg, "cpu")
    data_preprocessor = MODELS.build(model_cfg.model.data_preprocessor)

    def run(image: str | Path):
        data, x = task.create_input(str(image), data_preprocessor=data_preprocessor)
        return x.numpy().astype(np.float32), data["data_samples"][0]

    return run


def map50(ann_file: Path, images: list[dict], samples: list, detections: dict[int, tuple[np.ndarray, np.ndarray]],
          categories: Sequence[str]) -> float | None:
    """COCO mAP@0.5 of one row's detections on the images it ran (the same evaluation for every row): boxes are
    mapped from input to original image coordinates with each sample's scale factor and clipped to the image."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        cat_id = {c["name"]: c["id"] for c in gt.loadCats(gt.getCatIds())}
        label_cat = [cat_id[c] for c in categories]
        results = []
        for i, (dets, labels) in detections.items():
            sx, sy = samples[i].metainfo["scale_factor"][:2]
            h, w = samples[i].metainfo["ori_shape"][:2]
            for (x1, y1, x2, y2, score), label in zip(dets.tolist(), labels.tolist(), strict=True):
                x1, x2 = (min(max(v / sx, 0.0), w) for v in (x1, x2))
                y1, y2 = (min(max(v / sy, 0.0), h) for v in (y1, y2))
                results.append({"image_id": images[i]["id"], "category_id": label_cat[int(label)],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        if not results:
            return 0.0
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.imgIds = sorted({images[i]["id"] for i in detections})
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[1]) if ev.stats[1] >= 0 else None


@register
class ImageDetection(Task):
    name = "image-detection"
    description = "2D image detector (mmdet, CocoDataset)"
    dataset = "CocoDataset"
    metric = COCO_MAP50
    val_key = "coco/bbox_mAP_50"
    per_class_label = "AP@0.5"
    deploy_config = "detection_onnxruntime_dynamic"
    codebase = "mmdet"
    # ONNX Runtime fp32 (the reference runtime) and OpenVINO fp32 and int8 (the fastest CPU target). ONNX Runtime int8
    # and OpenVINO bf16 are targets to ask for: each one more build and val-split evaluation, and neither is the
    # fastest. Figures: admlops/backends/README.md.
    targets = "onnxruntime:fp32,openvino:fp32,openvino:int8"
    max_drop = MAX_DROP_FLOAT
    batch_sizes = (1, 4, 8)
    timed = TIMED
    pytorch_imports = ("torch", "mmdet.apis", "mmdet.models")

    # ---- evaluation --------------------------------------------------------------------------------------------

    def prepare_test(self, cfg, work_dir: Path) -> None:
        cfg.test_evaluator.outfile_prefix = str(work_dir / "detections")

    def metrics(self, raw: dict, cfg, work_dir: Path) -> dict:
        overall = {k.removeprefix("coco/"): float(v) for k, v in raw.items() if k.startswith("coco/bbox_")}
        if not overall:  # nothing detected anywhere: every AP is 0, not absent
            overall = dict.fromkeys(COCO_BBOX_KEYS, 0.0)
        return {"bbox": overall, "per_class": per_class_ap(cfg.test_evaluator.ann_file, work_dir / "detections.bbox.json")}

    def markdown(self, metrics: dict) -> str:
        bbox = metrics["bbox"]
        lines = [f"# COCO evaluation ({metrics.get('split', 'val')} split)", "",
                 f"mAP {number(bbox.get('bbox_mAP'))}, mAP@0.5 {number(bbox.get('bbox_mAP_50'))}, "
                 f"mAP@0.75 {number(bbox.get('bbox_mAP_75'))} (0-1)", ""]
        lines += table(["class", "AP", "AP@0.5"], [[c, number(ap["AP"]), number(ap["AP50"])]
                                                   for c, ap in metrics["per_class"].items()])
        return "\n".join(lines) + "\n"

    def log_metrics(self, kfp_metrics, result: dict, prefix: str = "") -> None:
        """mAP, mAP@0.5, mAP@0.75 and each class's AP@0.5."""
        log_finite(kfp_metrics, {k.removeprefix("bbox_"): result["bbox"].get(k)
                                 for k in ("bbox_mAP", "bbox_mAP_50", "bbox_mAP_75")}, prefix)
        log_finite(kfp_metrics, {f"AP50_{name}": ap["AP50"] for name, ap in result["per_class"].items()}, prefix)

    def summary_lines(self, metrics: dict) -> list[str]:
        per_class = ", ".join(f"{k} {v['AP50']:.3f}" for k, v in metrics["per_class"].items())
        return [f"PyTorch      mAP@0.5 {metrics['bbox']['bbox_mAP_50']:.3f}  mAP {metrics['bbox']['bbox_mAP']:.3f}  "
                f"(AP@0.5: {per_class})"]

    def per_class(self, metrics: dict) -> dict[str, float]:
        return {name: ap["AP50"] for name, ap in metrics["per_class"].items()}

    # ---- export ------------------------------------------------------------------------------------------------

    def prunable(self, model, cfg, dataset_dir):
        """The whole detector's tensor forward (every level's class and box maps) on the first val image, as the
        test pipeline and data preprocessor prepare it."""
        import copy

        from mmengine.dataset import pseudo_collate
        from mmengine.registry import DATASETS

        cfg = copy.deepcopy(cfg)
        use_dataset(cfg, dataset_dir)
        data = model.data_preprocessor(pseudo_collate([DATASETS.build(cfg.test_dataloader.dataset)[0]]), False)
        return (lambda detector, x: detector(x, mode="tensor")), data["inputs"]

    def qat_forward(self):
        """The whole detector's tensor forward on a preprocessed image batch."""
        import torch

        return lambda model, batch: model(torch.from_numpy(batch), mode="tensor")

    def prepare(self, deploy_cfg, model_cfg, dataset_dir) -> str:
        """Sync the deploy config with the model; the first val image, which the export traces on."""
        sync_post_processing(deploy_cfg, model_cfg)
        sync_input_shapes(deploy_cfg, model_cfg)
        ann, images = split_images(dataset_dir, "val")
        if not images:
            raise InputError(ann, "the val split is empty: nothing to trace or evaluate the export on")
        return str(Path(dataset_dir) / images[0]["file_name"])

    def calibration_set(self, dataset_dir, model_cfg, deploy_cfg, count: int, split: str = "train") -> Calibration:
        """``count`` train images evenly spaced over the split, preprocessed, one per batch."""
        check_count(count)
        ann, images = split_images(dataset_dir, split)
        if not images:
            raise InputError(ann, f"the {split} split has no images: int8 needs images to calibrate on")
        chosen = spread([str(Path(dataset_dir) / im["file_name"]) for im in images], count)
        run = preprocessor(model_cfg, deploy_cfg)
        batches = [run(image)[0] for image in tqdm(chosen, desc=f"calibration images ({split})", unit="img")]
        return Calibration(str(ann), batches, chosen)

    def export_line(self, tag: str, measured: dict, pytorch: dict) -> str:
        o, ref = measured["bbox"], pytorch["bbox"]["bbox_mAP_50"]
        return f"{tag:<18} mAP@0.5 {o['bbox_mAP_50']:.3f}  mAP {o['bbox_mAP']:.3f}  (difference {o['bbox_mAP_50'] - ref:+.4f})"

    # ---- benchmark ---------------------------------------------------------------------------------------------

    def bench_inputs(self, dataset_dir: Path, export_dir: Path, max_inputs: int, batch_sizes: list[int]) -> BenchInputs:
        """The val images (the first ``max_inputs``; 0 = all) through the export's test pipeline and data
        preprocessor, stacked [N, 3, H, W] (one padded shape: batching needs it); accuracy: COCO mAP@0.5."""
        from mmengine.config import Config

        ann_file, images = split_images(dataset_dir, "val")
        images = images[:max_inputs] if max_inputs else images
        if not images:
            raise InputError(ann_file, "the val split has no images to benchmark on")
        files = [str(dataset_dir / im["file_name"]) for im in images]
        run = preprocessor(Config.fromfile(str(export_dir / "model.py")), Config.fromfile(str(export_dir / "deploy.py")))
        tensors, samples = [], []
        for f in tqdm(files, desc="preprocess", unit="img"):
            x, sample = run(f)
            tensors.append(x[0])
            samples.append(sample)
        shapes = sorted({t.shape for t in tensors})
        if len(shapes) > 1:
            raise InputError(ann_file, f"images preprocess to {len(shapes)} different shapes {shapes}; batching needs one")
        categories = dataset_meta(dataset_dir)["classes"]
        return BenchInputs(files, np.stack(tensors), samples, list(tensors[0].shape),
                           lambda detections: map50(ann_file, images, samples, detections, categories))

    def load_pytorch(self, spec: dict):
        """mmdet's detector from the export's model config and train's weights; predict = forward + decode + NMS."""
        import pickle

        import torch
        from mmdet.apis import init_detector

        compat.apply()
        if spec["threads"]:
            torch.set_num_threads(spec["threads"])
        samples = pickle.loads(Path(spec["samples"]).read_bytes())
        model = init_detector(spec["model_config"], spec["checkpoint"], device="cpu")

        def predict(batch: np.ndarray, idx: list[int]):
            with torch.inference_mode():
                return model.predict(torch.from_numpy(batch), [samples[i] for i in idx], rescale=False)

        predict.kernels = lambda: f"ATen {torch.backends.cpu.get_cpu_capability()}"

        def after(out) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(torch.cat([s.pred_instances.bboxes, s.pred_instances.scores[:, None]], 1).numpy(),
                     s.pred_instances.labels.numpy()) for s in out]

        return predict, after, torch.get_num_threads()

    def load_backend(self, spec: dict):
        """A backend Runner of the end-to-end graph: predict = the graph (network, decoding, NMS) on the batch."""
        from admlops.backends import get_backend

        runner = get_backend(spec["runtime"]).load(Path(spec["artifact_dir"]), threads=spec["threads"])

        def predict(batch: np.ndarray, idx: list[int]):
            return runner(batch)

        predict.kernels = getattr(runner, "kernels", None)

        def after(out) -> list[tuple[np.ndarray, np.ndarray]]:
            dets, labels = np.asarray(out["dets"]), np.asarray(out["labels"])
            return [(d[d[:, 4] > 0], lab[d[:, 4] > 0]) for d, lab in zip(dets, labels, strict=True)]

        return predict, after, spec["threads"] or None
