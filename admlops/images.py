"""Container images of the components, defined once. The pipelines read them at compile time.

Each image is built from ``images/<name>/Dockerfile`` (versions from admlops/pins.py; see images/README.md)
and tagged with the project version, so a release's pipelines name the images built from the same commit.
"""
from __future__ import annotations

from admlops import __version__

REGISTRY = "ghcr.io/admlops"
VERSION = __version__

# image name -> what it holds
IMAGE_CONTENTS = {
    "cpu": "the CPU closed loop: torch (CPU), mmcv with CPU ops, mmdet, mmdet3d, mmdeploy, ONNX Runtime, kfp",
    "train": "CUDA training: torch (CUDA), mmcv with CUDA ops, mmdet, mmdet3d, kfp",
    "deploy": "the train image + TensorRT 10, mmdeploy with its TensorRT ops, ONNX Runtime (CUDA)",
}

# image name -> reference
IMAGES = {name: f"{REGISTRY}/{name}:{VERSION}" for name in IMAGE_CONTENTS}

# component -> image name. Components that run on one machine without a GPU (kfp.local, CI) take `cpu`.
COMPONENT_IMAGES = {
    "convert": "cpu",
    "analyze": "cpu",
    "train": "cpu",  # the closed loop's single-process CPU training; GPU training is train-distributed
    "evaluate": "cpu",
    "export": "cpu",
    "benchmark": "cpu",
    "register": "cpu",
    "train-distributed": "train",  # the TrainJob's nodes (torch-distributed ClusterTrainingRuntime)
    "export-trt": "deploy",  # ONNX -> TensorRT engine
    "benchmark-trt": "deploy",  # TensorRT / ONNX Runtime CUDA latency
}


def image_for(component: str) -> str:
    """The image reference a component runs in, e.g. ``image_for("convert")`` -> ``ghcr.io/admlops/cpu:0.1.0``."""
    try:
        return IMAGES[COMPONENT_IMAGES[component]]
    except KeyError:
        raise KeyError(f"no image for component {component!r}: expected one of {sorted(COMPONENT_IMAGES)}") from None
