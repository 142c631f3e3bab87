"""Shared fixtures: a small synthetic KITTI dataset and its COCO conversion, built once per session; a detector
that has learned something (``learned_model``) and its ONNX export (``learned_onnx``); moto's S3 server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from admlops.geometry import box_iou  # noqa: F401 - tests import it from here

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def kitti_root(tmp_path_factory) -> Path:
    from admlops.components.synth.kitti import synth_kitti

    return synth_kitti(tmp_path_factory.mktemp("kitti") / "kitti", frames=20, seed=7, workers=2)


@pytest.fixture(scope="session")
def coco_dir(kitti_root, tmp_path_factory) -> Path:
    from admlops.components.convert.to_coco import kitti_to_coco

    out = tmp_path_factory.mktemp("coco") / "coco"
    kitti_to_coco(kitti_root, out)
    return out


NUSCENES = dict(scenes=2, samples_per_scene=4, sweeps_per_sample=2)  # 8 samples: 4 train, 4 val scenes' worth


@pytest.fixture(scope="session")
def nuscenes_root(tmp_path_factory) -> Path:
    """Synthetic nuScenes (v1.0-mini) under ``data/nuscenes``: mmdet3d's update_infos_to_v2 reopens the devkit at
    the hard-coded ``./data/nuscenes``, so the reference must run from the directory above ``data``."""
    from admlops.components.synth.nuscenes import synth_nuscenes

    return synth_nuscenes(tmp_path_factory.mktemp("nus") / "data" / "nuscenes", seed=5, workers=2, **NUSCENES)


def reference_tools() -> Path | None:
    """mmdet3d's bundled tools/ (create_data.py and the dataset converters), if its wheel ships them."""
    import importlib.util

    spec = importlib.util.find_spec("mmdet3d")
    mim = Path(spec.origin).parent / ".mim" if spec else None
    return mim if mim and (mim / "tools" / "create_data.py").is_file() else None


@pytest.fixture(scope="session")
def nuscenes_reference(nuscenes_root) -> Path:
    """``nuscenes_root`` after mmdet3d's own ``create_data.py nuscenes`` wrote its infos and GT database into it."""
    import subprocess
    import sys

    mim = reference_tools()
    if mim is None:
        pytest.skip("mmdet3d's wheel ships no tools/create_data.py here")
    cmd = [sys.executable, str(mim / "tools" / "create_data.py"), "nuscenes", "--root-path", "./data/nuscenes",
           "--out-dir", "./data/nuscenes", "--extra-tag", "nuscenes", "--version", "v1.0-mini", "--max-sweeps", "10"]
    proc = subprocess.run(cmd, cwd=nuscenes_root.parent.parent, env=dict(os.environ, PYTHONPATH=str(mim)),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return nuscenes_root


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("PYTHONHASHSEED", os.environ.get("PYTHONHASHSEED", "0"))


FAKE_KEY_ID = "AKIDTESTONLY0000"  # moto accepts any credentials; these are not real
FAKE_SECRET = "test-secret-not-real-0000000000000000000"


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server in HTTP mode on loopback: a real S3 protocol peer, driven through boto3."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3_env(s3_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return s3_endpoint


@pytest.fixture(params=["local", "s3"])
def store_uri(request, tmp_path):
    """The same storage tests run against the embedded local store and a real S3 protocol server."""
    if request.param == "local":
        return str(tmp_path / "store")
    request.getfixturevalue("s3_env")
    import uuid

    import boto3

    bucket = f"admlops-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


def admlops(*args, timeout: int = 1800, check: bool = True) -> subprocess.CompletedProcess:
    """``admlops ARGS`` in a fresh process (W&B offline); with ``check``, asserts exit 0, with the output's tail if
    not."""
    env = dict(os.environ, WANDB_MODE="offline", PYTHONHASHSEED=os.environ.get("PYTHONHASHSEED", "0"))
    res = subprocess.run([sys.executable, "-m", "admlops.pipelines.cli", *map(str, args)], capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert res.returncode == 0 or not check, f"admlops {' '.join(map(str, args))}:\n" + res.stdout[-3000:] + res.stderr[-5000:]
    return res


# The learned model: RTMDet-tiny (configs/models/rtmdet_tiny_kitti.py, the shipped schedule scaled to ITERS) on
# FRAMES synthetic KITTI frames (ImageSets split: every 5th frame is val), batch 8 at 640x192.
LEARNED = dict(frames=200, seed=3, iters=120, batch_size=8)
# A 4-iteration model of the same config on the same val split stays far below this (tested in
# test_e2e_local: measured 0.000); the learned model is far above it (measured: see ``learned_model``).
LEARNED_MAP50_FLOOR = 0.5


@dataclass(frozen=True)
class LearnedModel:
    """A trained detector and what it was trained and evaluated on (paths are directories of the components'
    own output layouts: convert's ``Dataset``, train's ``Model``, evaluate's report)."""

    kitti: Path  # the synthetic KITTI root
    dataset: Path  # convert's output: annotations/{train,val}.json, images, splits
    model: Path  # train's output: model.pth, config.py, train_log.json
    metrics_file: Path  # evaluate's metrics.json: PyTorch COCO metrics on the val split
    metrics: dict
    iterations: int
    batch_size: int

    @property
    def map50(self) -> float:
        return self.metrics["bbox"]["bbox_mAP_50"]


@pytest.fixture(scope="session")
def learned_model(tmp_path_factory) -> LearnedModel:
    """RTMDet-tiny trained from scratch until it has clearly learned the synthetic classes, through the
    product's own commands: ``admlops data synth kitti`` -> ``data convert`` -> ``train`` -> ``evaluate``.

    Measured on the 2-core development machine (LEARNED: 200 frames = 160 train / 40 val, 120 iterations at
    batch 8): PyTorch mAP@0.5 0.708 on the val split; the fixture takes about 3 min (training ~160 s).
    Deterministic for a given machine: same seed, same data, same schedule.
    """
    root = tmp_path_factory.mktemp("learned")
    kitti, dataset, model, report = root / "kitti", root / "dataset", root / "model", root / "evaluate"
    admlops("data", "synth", "kitti", "--frames", LEARNED["frames"], "--seed", LEARNED["seed"], "--out", kitti)
    admlops("data", "convert", "--strict", kitti, dataset)
    admlops("train", dataset, model, "--max-iters", LEARNED["iters"], "--batch-size", LEARNED["batch_size"])
    admlops("evaluate", dataset, model, report)
    metrics = json.loads((report / "metrics.json").read_text())
    learned = LearnedModel(kitti, dataset, model, report / "metrics.json", metrics, LEARNED["iters"], LEARNED["batch_size"])
    assert learned.map50 > LEARNED_MAP50_FLOOR, f"the fixture's model did not learn: {metrics['bbox']}"
    return learned


# the pipeline tests' KITTI source: the learned model's frames with the val split cut to this many frames (train
# unchanged): their pipelines evaluate each model on val in several steps, where the full 40 frames cost minutes
PIPELINE_VAL_FRAMES = 12


@dataclass(frozen=True)
class SmallVal:
    kitti: Path  # a KITTI root: the learned model's training/ folder, ImageSets with the val split cut
    map50: float  # the learned model's PyTorch mAP@0.5 on that val split


@pytest.fixture(scope="session")
def small_val(learned_model, tmp_path_factory) -> SmallVal:
    root = tmp_path_factory.mktemp("small-val")
    kitti = root / "kitti"
    kitti.mkdir()
    for entry in learned_model.kitti.iterdir():
        if entry.name != "ImageSets":
            (kitti / entry.name).symlink_to(entry)
    (kitti / "ImageSets").mkdir()
    sets = learned_model.kitti / "ImageSets"
    (kitti / "ImageSets" / "train.txt").write_text((sets / "train.txt").read_text())
    val = (sets / "val.txt").read_text().split()[:PIPELINE_VAL_FRAMES]
    (kitti / "ImageSets" / "val.txt").write_text("\n".join(val) + "\n")
    admlops("data", "convert", "--strict", kitti, root / "dataset")
    admlops("evaluate", root / "dataset", learned_model.model, root / "evaluate")
    metrics = json.loads((root / "evaluate" / "metrics.json").read_text())
    return SmallVal(kitti, metrics["bbox"]["bbox_mAP_50"])

# export ``learned_model`` with components/export/export.py: mmdeploy -> end2end.onnx, evaluated under ONNX Runtime
# (fp32 only, where export builds several deploy targets: the other targets have their own tests)
_EXPORT = """
import json, sys
from admlops.components.export.export import export
export(sys.argv[1], sys.argv[2], sys.argv[3], pytorch_metrics=json.loads(open(sys.argv[4]).read()))
"""


@pytest.fixture(scope="session")
def learned_onnx(learned_model, tmp_path_factory) -> Path:
    """``learned_model`` exported by the export component with its default deploy targets (mmdeploy ->
    ``end2end.onnx``; ONNX Runtime fp32, OpenVINO fp32 and int8 built, evaluated on the same val split and gated;
    ``metrics.json`` holds every target's numbers and PyTorch's, which are ``learned_model``'s)."""
    out = tmp_path_factory.mktemp("learned-onnx") / "onnx"
    env = dict(os.environ, WANDB_MODE="offline")
    res = subprocess.run([sys.executable, "-c", _EXPORT, str(learned_model.dataset), str(learned_model.model), str(out),
                          str(learned_model.metrics_file)], capture_output=True, text=True, timeout=1800, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return out


@dataclass
class ValImage:
    """One val image as the deployed model sees it, with PyTorch's detections and the ground truth, all in the
    network input's coordinates (640x192 after resize and pad)."""

    file: str
    inputs: Any  # float32 [1, 3, H, W]: the data preprocessor's output, the ONNX model's input
    boxes: Any  # PyTorch detections: [K, 4] x1 y1 x2 y2, scores [K], labels [K], by descending score
    scores: Any
    labels: Any
    gt_boxes: Any  # the positives (ignore regions left out)
    gt_labels: Any


def pytorch_val_images(model_dir: Path, dataset_dir: Path, count: int) -> list[ValImage]:
    """The first ``count`` val images through the model's test pipeline and data preprocessor, and the PyTorch
    model's detections on them (mmdet's own predict, not rescaled to the original image)."""
    import numpy as np
    import torch
    from mmdet.registry import DATASETS, MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate

    from admlops import compat
    from admlops.mmconfig import use_dataset

    compat.apply()
    register_all_modules()
    cfg = Config.fromfile(str(Path(model_dir) / "config.py"))
    use_dataset(cfg, dataset_dir)
    model = MODELS.build(cfg.model)
    model.load_state_dict(torch.load(Path(model_dir) / "model.pth", map_location="cpu", weights_only=True)["state_dict"])
    model.eval()
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    images = []
    for i in range(count):
        data = model.data_preprocessor(pseudo_collate([dataset[i]]), False)
        with torch.no_grad():
            (sample,) = model.predict(data["inputs"], data["data_samples"], rescale=False)
        pred, gt = sample.pred_instances, sample.gt_instances
        order = pred.scores.argsort(descending=True)
        # the test pipeline loads the annotations after Resize: ground truth is in the original image's pixels
        scale = np.tile(np.asarray(sample.scale_factor, dtype=np.float64), 2)
        images.append(ValImage(sample.img_path, data["inputs"].numpy().astype(np.float32), pred.bboxes[order].numpy(),
                               pred.scores[order].numpy(), pred.labels[order].numpy(),
                               getattr(gt.bboxes, "tensor", gt.bboxes).numpy() * scale, gt.labels.numpy()))
    return images
