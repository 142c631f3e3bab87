"""Every compatibility shim between torch 2.13 and the OpenMMLab 1.x/3.x stack, in one place.

``apply()`` installs them once per process; every step that touches torch calls it first.
Each shim has a test (tests/test_compat.py) that fails if the shim is removed or stops being needed.

1. ``torch.onnx.export`` defaults to the dynamo exporter since torch 2.9. mmdeploy's rewriters patch
   the TorchScript exporter, so its exports break; we default ``dynamo=False`` (an explicit
   ``dynamo=True`` from a caller still wins).
2. ``torch.load`` defaults to ``weights_only=True`` since torch 2.6, and mmengine 0.10.7 checkpoints
   carry a ``message_hub`` with mmengine and numpy objects, so loading them fails. Instead of turning
   the safe loader off (``weights_only=False`` unpickles arbitrary code from whatever bucket a
   checkpoint came from) we allowlist exactly the types mmengine checkpoints contain.
4. mmengine 0.10.7 starts every ``launcher='pytorch'`` process with ``torch.cuda.set_device``, which a CPU
   build of torch lacks, so DDP on CPU (gloo) cannot start; without CUDA we initialise the process group
   alone (the model is wrapped with ``device_ids=None``, as torch's DDP wants for CPU modules: train.py).
3. mmdet3d 1.4's GT-database sampler (ObjectSample augmentation) builds an array with ``dtype=np.long``,
   an alias numpy 1.24 removed; we restore it as ``np.int64`` (what it meant) when it is missing.
5. mmdet3d 1.4's KITTI evaluation (KittiMetric -> kitti_eval) computes rotated BEV/3D overlaps with a numba CUDA
   kernel (``kitti_utils/rotate_iou.py``) that is compiled when its module is imported, so without a CUDA driver
   the metric fails at driver init (and compiling it needs NVVM from a CUDA toolkit). We register that module as a
   stand-in whose ``rotate_iou_gpu_eval`` is ``rotate_iou_cpu_eval``, the same definition computed with shapely
   (an mmdet3d dependency), on every machine, so KITTI numbers do not depend on where they were computed
   (tests/test_compat_rotate_iou.py checks it against the CUDA kernel run in numba's simulator).
6. mmdet3d 1.4's nuScenes evaluation of camera detections (NuScenesMetric._format_camera_bbox, which merges a
   sample's six views with a 3D NMS) moves the boxes to the GPU with ``.cuda()`` in ``nusc_box_to_cam_box3d``,
   which fails on a CPU build of torch; we replace that function with ``nusc_box_to_cam_box3d_cpu``, the same
   conversion on the boxes' own device (the NMS after it runs on the CPU). Importing the metric's module takes
   seconds, so the replacement is installed when something imports it (``_after_import``), not by ``apply()``
   (tests/test_det3d_nuscenes.py evaluates FCOS3D through it and checks the conversion).
7. The nuScenes devkit's evaluation (nuscenes-devkit 1.1, ``NuScenesEval`` -> ``filter_eval_boxes``) finds the
   class field of its boxes by looking at the first box and raises ``Invalid box type: None`` when there is none,
   so a model that detects nothing within the class ranges on the whole split (an untrained one, or one whose
   detections all lie out of range) fails evaluation instead of scoring mAP 0. With no box there is nothing for
   the field to filter, so we answer ``detection_name`` then and ask the devkit otherwise
   (tests/test_det3d_nuscenes.py scores a split without detections).
8. mmdeploy 1.3's ONNX symbolic of mmcv's RoIAlign (two-stage detectors: Faster R-CNN's RoI extractor) casts the
   RoIs' batch indices with ``torch.onnx.symbolic_opset9._cast_Long``, a helper torch removed; the export of any
   two-stage detector fails with an ImportError. We put back what it did: an ONNX ``Cast`` to int64
   (tests/test_families.py exports Faster R-CNN and compares its boxes with PyTorch's).
9. mmdeploy 1.3's rewrite of RTMDet's ``predict_by_feat`` decodes the boxes without clipping them to the image,
   where mmdet's RTMDet clips them (``DistancePointBBoxCoder``, ``clip_border``) before NMS. A box reaching past the
   border then overlaps its neighbours less, so NMS keeps boxes PyTorch suppresses: a model whose confident boxes
   cross the border (a truncated car; measured: the demo's model at learning rate 0.008, 2.9 mAP@0.5 points below
   PyTorch under ONNX Runtime fp32) fails its gate. We replace that rewrite's function with the same decode and NMS
   plus mmdeploy's own ``clip_bboxes`` (tests/test_compat.py exports a head whose boxes cross the border).
"""
from __future__ import annotations

import builtins
import functools
import importlib
import importlib.abc
import importlib.util
import sys
import types

_applied = False


def _onnx_export_legacy_default() -> None:
    import torch.onnx

    original = torch.onnx.export
    if getattr(original, "_admlops_shim", False):
        return

    @functools.wraps(original)
    def export(*args, dynamo: bool = False, **kwargs):
        return original(*args, dynamo=dynamo, **kwargs)

    export._admlops_shim = True
    torch.onnx.export = export


def _onnx_cast_long() -> None:
    symbolic_opset9 = importlib.import_module("torch.onnx.symbolic_opset9")  # the module mmdeploy imports from
    if not hasattr(symbolic_opset9, "_cast_Long"):
        def _cast_Long(g, input, non_blocking):  # noqa: N802 (the name mmdeploy imports)
            return g.op("Cast", input, to_i=7)  # onnx.TensorProto.INT64

        symbolic_opset9._cast_Long = _cast_Long


def mmengine_checkpoint_globals() -> list:
    """The non-tensor types inside an mmengine 0.10.7 checkpoint (measured on checkpoints it wrote)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    return [
        HistoryBuffer,
        np.core.multiarray._reconstruct,
        np.core.multiarray.scalar,
        np.ndarray,
        np.dtype,
        type(np.dtype(np.float64)),
        type(np.dtype(np.float32)),
        type(np.dtype(np.int64)),
        type(np.dtype(np.int32)),
        # numpy pickles its dtype classes through getattr(module, name); the unpickler still refuses to
        # call anything that getattr returns unless it is allowlisted too.
        builtins.getattr,
    ]


def _allow_mmengine_checkpoints() -> None:
    import torch.serialization

    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())


def _numpy_long_alias() -> None:
    import numpy as np

    if "long" not in np.__dict__:
        np.long = np.int64


def _mmengine_cpu_ddp() -> None:
    import mmengine.dist.utils as dist_utils
    import torch

    original = dist_utils._init_dist_pytorch
    if getattr(original, "_admlops_shim", False):
        return

    @functools.wraps(original)
    def init(backend, init_backend="torch", **kwargs):
        if torch.cuda.is_available() or init_backend != "torch":
            return original(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(backend=backend, **kwargs)

    init._admlops_shim = True
    dist_utils._init_dist_pytorch = init


ROTATE_IOU_MODULE = "mmdet3d.evaluation.functional.kitti_utils.rotate_iou"


def rotate_iou_cpu_eval(boxes, query_boxes, criterion: int = -1, device_id: int = 0):
    """mmdet3d's ``rotate_iou_gpu_eval`` on the CPU: overlaps [N, K] (float32) of rotated BEV boxes ``boxes``
    [N, 5] and ``query_boxes`` [K, 5], each (x, y, dx, dy, angle) with its corners placed as the kernel places
    them (local x axis along (cos a, -sin a)). As the kernel defines it, element [n, k] is, for ``criterion`` -1,
    inter / (area_n + area_k - inter); 0, inter / area_k (the query box); 1, inter / area_n; anything else, the
    intersection area itself. ``device_id`` is accepted and ignored.

    Intersections are shapely's (GEOS) polygon overlay, exact also where edges coincide: for a box and its
    float32 round trip (a prediction equal to the ground truth) the CUDA kernel, and mmcv's box_iou_rotated too,
    can return 0 or 1/3 instead of 1. Only pairs whose circumscribed circles meet are intersected."""
    import numpy as np
    import shapely

    boxes = np.asarray(boxes, np.float32).reshape(-1, 5).astype(np.float64)
    query = np.asarray(query_boxes, np.float32).reshape(-1, 5).astype(np.float64)
    out = np.zeros((len(boxes), len(query)), np.float32)
    if not out.size:
        return out

    def polygons(b):
        local = np.array([[-0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.5, -0.5]]) * b[:, None, 2:4]
        cos, sin = np.cos(b[:, 4:5]), np.sin(b[:, 4:5])
        x = cos * local[..., 0] + sin * local[..., 1] + b[:, 0:1]
        y = -sin * local[..., 0] + cos * local[..., 1] + b[:, 1:2]
        return shapely.polygons(np.stack([x, y], axis=-1))

    reach = np.hypot(boxes[:, 2], boxes[:, 3])[:, None] / 2 + np.hypot(query[:, 2], query[:, 3])[None, :] / 2
    n, k = np.nonzero(np.hypot(boxes[:, None, 0] - query[None, :, 0], boxes[:, None, 1] - query[None, :, 1]) < reach)
    inter = shapely.area(shapely.intersection(polygons(boxes)[n], polygons(query)[k]))
    area_n, area_k = boxes[n, 2] * boxes[n, 3], query[k, 2] * query[k, 3]
    base = {-1: area_n + area_k - inter, 0: area_k, 1: area_n}.get(criterion, np.ones_like(inter))
    out[n, k] = np.divide(inter, base, out=np.zeros_like(inter), where=base > 0)
    return out


def _kitti_rotate_iou_on_cpu() -> None:
    module = sys.modules.get(ROTATE_IOU_MODULE)
    if module is None:  # kitti_eval imports it inside each overlap function, so the stand-in is what it finds
        module = sys.modules[ROTATE_IOU_MODULE] = types.ModuleType(ROTATE_IOU_MODULE, "admlops.compat: CPU stand-in")
    module.rotate_iou_gpu_eval = rotate_iou_cpu_eval


def own_runner_state(cfg) -> None:
    """Give the Runner that ``cfg`` will build a visualizer and message hub of its own. mmengine keeps both as
    process-wide instances keyed by name: mmdet's configs name the visualizer ``'visualizer'`` and the hub takes
    the experiment name (config + second), so a second train/test run in one process (promote evaluates two
    models, a benchmark trains several) would log and dump its config into the first run's work dir, which by
    then is published elsewhere (FileNotFoundError)."""
    import uuid

    run = uuid.uuid4().hex[:12]
    cfg.experiment_name = f"run-{run}"
    if cfg.get("visualizer") is not None:
        cfg.visualizer.name = f"visualizer-{run}"


def _after_import(name: str, patch) -> None:
    """Call ``patch(module)`` once module ``name`` is imported: now if it is, else right after its import runs."""
    if name in sys.modules:
        patch(sys.modules[name])
        return

    class AfterImport(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname != name:
                return None
            sys.meta_path.remove(self)  # one import, then out of the way
            spec = importlib.util.find_spec(fullname)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, AfterImport())


NUSCENES_METRIC_MODULE = "mmdet3d.evaluation.metrics.nuscenes_metric"


def nusc_box_to_cam_box3d_cpu(boxes):
    """mmdet3d's ``nusc_box_to_cam_box3d`` (nuScenes boxes -> CameraInstance3DBoxes with velocity, per-class NMS
    scores over 10 classes + background, labels) without moving them to a GPU."""
    import numpy as np
    import torch
    from mmdet3d.structures import CameraInstance3DBoxes

    def column(values, width):
        return torch.as_tensor(np.asarray(values, np.float32).reshape(-1, width))

    locs, dims = column([b.center for b in boxes], 3), column([b.wlh for b in boxes], 3)[:, [1, 2, 0]]
    rots = -column([b.orientation.yaw_pitch_roll[0] for b in boxes], 1)  # nuScenes box -> camera box convention
    velocity = column([b.velocity[0::2] for b in boxes], 2)
    cam_boxes3d = CameraInstance3DBoxes(torch.cat([locs, dims, rots, velocity], dim=1), box_dim=9,
                                        origin=(0.5, 0.5, 0.5))
    scores, labels = column([b.score for b in boxes], 1)[:, 0], torch.as_tensor([b.label for b in boxes]).long()
    nms_scores = scores.new_zeros(scores.shape[0], 10 + 1)
    nms_scores[torch.arange(len(boxes)), labels] = scores
    return cam_boxes3d, nms_scores, labels


def _nuscenes_camera_boxes_on_cpu(module) -> None:
    if module.nusc_box_to_cam_box3d is not nusc_box_to_cam_box3d_cpu:
        nusc_box_to_cam_box3d_cpu.replaces = module.nusc_box_to_cam_box3d  # mmdet3d's, for the shim's test
        module.nusc_box_to_cam_box3d = nusc_box_to_cam_box3d_cpu


DEVKIT_LOADERS_MODULE = "nuscenes.eval.common.loaders"


def _devkit_scores_no_detections(module) -> None:
    original = module._get_box_class_field
    if getattr(original, "_admlops_shim", False):
        return

    @functools.wraps(original)
    def class_field(eval_boxes):
        if not any(eval_boxes.boxes.values()):
            return "detection_name"
        return original(eval_boxes)

    class_field._admlops_shim = True
    module._get_box_class_field = class_field


RTMDET_REWRITE_MODULE = "mmdeploy.codebase.mmdet.models.dense_heads.rtmdet_head"
RTMDET_PREDICT = "mmdet.models.dense_heads.rtmdet_head.RTMDetHead.predict_by_feat"


def rtmdet_head__predict_by_feat(self, cls_scores, bbox_preds, batch_img_metas=None, cfg=None, rescale=False,
                                 with_nms=True):
    """RTMDet's export-time decode (mmdeploy's rewrite, default backend): boxes from every level's points and
    distances, clipped to the input image as mmdet's head clips them, then mmdeploy's multiclass NMS with the
    deploy config's post-processing (the model's test_cfg first)."""
    import torch
    from mmdeploy.codebase.mmdet import get_post_processing_params
    from mmdeploy.codebase.mmdet.deploy import clip_bboxes
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.mmcv.ops import multiclass_nms

    ctx = FUNCTION_REWRITER.get_context()
    cfg = self.test_cfg if cfg is None else cfg
    batch = cls_scores[0].shape[0]
    priors = torch.cat(self.prior_generator.grid_priors([s.shape[2:] for s in cls_scores], device=cls_scores[0].device))
    scores = torch.cat([s.permute(0, 2, 3, 1).reshape(batch, -1, self.cls_out_channels) for s in cls_scores], 1).sigmoid()
    distances = torch.cat([b.permute(0, 2, 3, 1).reshape(batch, -1, 4) for b in bbox_preds], 1)
    x1, y1 = priors[..., 0] - distances[..., 0], priors[..., 1] - distances[..., 1]
    x2, y2 = priors[..., 0] + distances[..., 2], priors[..., 1] + distances[..., 3]
    if batch_img_metas and self.bbox_coder.clip_border:
        x1, y1, x2, y2 = clip_bboxes(x1, y1, x2, y2, batch_img_metas[0]["img_shape"])
    bboxes = torch.stack([x1, y1, x2, y2], -1)
    if not with_nms:
        return bboxes, scores
    post = get_post_processing_params(ctx.cfg)
    return multiclass_nms(bboxes, scores, post.max_output_boxes_per_class, nms_type=cfg.nms.get("type"),
                          iou_threshold=cfg.nms.get("iou_threshold", post.iou_threshold),
                          score_threshold=cfg.get("score_thr", post.score_threshold), pre_top_k=post.pre_top_k,
                          keep_top_k=cfg.get("max_per_img", post.keep_top_k))


def _rtmdet_export_clips(module) -> None:
    from mmdeploy.core import FUNCTION_REWRITER

    for record in FUNCTION_REWRITER._registry._rewrite_records.get(RTMDET_PREDICT, []):
        if record["_object"] is module.rtmdet_head__predict_by_feat:
            rtmdet_head__predict_by_feat.replaces = record["_object"]  # mmdeploy's, for the shim's test
            record["_object"] = rtmdet_head__predict_by_feat


def apply() -> None:
    """Install all shims (idempotent)."""
    global _applied
    if _applied:
        return
    _onnx_export_legacy_default()
    _onnx_cast_long()
    _allow_mmengine_checkpoints()
    _numpy_long_alias()
    _mmengine_cpu_ddp()
    _kitti_rotate_iou_on_cpu()
    _after_import(NUSCENES_METRIC_MODULE, _nuscenes_camera_boxes_on_cpu)
    _after_import(DEVKIT_LOADERS_MODULE, _devkit_scores_no_detections)
    _after_import(RTMDET_REWRITE_MODULE, _rtmdet_export_clips)
    _applied = True
