"""Every pinned version of the project, in one place.

Read by:
  * scripts/install.sh (bash), before any venv exists: ``eval "$(python3.11 admlops/pins.py)"`` exports
    ``PIN_<NAME>`` variables (``PIN_TORCH=2.13.0``, ``PIN_NUMPY='<2'``, ``PIN_CUDA_VERSION=13.0.1``, ...);
  * images/*/Dockerfile: the base-image tags and toolchain versions are build ARGs whose defaults equal
    ``BUILD`` below; the Python packages come from ``python admlops/pins.py --constraints`` (a pip
    constraints file) run inside the build, so no package version is written twice;
  * admlops.images at pipeline compile time, and tests/test_images.py, which checks all of the above agree.

Standard library only: it runs before anything is installed. Change a version here and nowhere else.
"""
from __future__ import annotations

import re
import shlex
import sys

# Python packages installed with ``==``. torch is the plain version: the CUDA images take the
# ``+<TORCH_CUDA>`` build of the same version from the PyTorch index.
PACKAGES: dict[str, str] = {
    "torch": "2.13.0",  # torch 2.14 headers break mmcv 2.1.0's C++17 build
    "mmengine": "0.10.7",
    "mmcv": "2.1.0",  # built from source; mmdet 3.3.0 requires mmcv<2.2
    "mmdet": "3.3.0",
    "mmdet3d": "1.4.0",
    "mmdeploy": "1.3.1",
    "onnxruntime": "1.26.0",  # CPU build (developer machines, CI, the cpu image)
    "openvino": "2026.4.1",  # CPU backend: convert_model reads the end2end ONNX (mmdeploy's mo path is gone)
    "nncf": "3.4.0",  # OpenVINO int8: post-training quantization
    "ml-dtypes": "0.5.4",  # onnxruntime.quantization (ONNX Runtime int8) imports it; 0.5 is the last for numpy 1.x
    "onnxruntime-gpu": "1.26.0",  # deploy image, from ONNX Runtime's CUDA 13 index (PyPI's build is CUDA 12)
    "tensorrt-cu13": "10.16.1.11",  # CUDA 13 build; the backend takes 10.x and 11.x (strongly typed), the image pins 10
    "kfp": "2.17.0",  # 2.17.3 needs a certifi the registry does not serve
    "kfp-kubernetes": "2.17.0",
    "kubeflow-trainer-api": "2.3.0",  # train-distributed: the TrainJob from the typed models of the Trainer it targets
    "pyarrow": "20.0.0",  # the last that works with numpy 1.x
    "boto3": "1.44.5",
    "wandb": "0.31.0",
    "torch-pruning": "1.6.1",  # prune: structural (channel) pruning with its dependency graph
    "rosbags": "0.11.9",  # ingest: ROS 1 / ROS 2 (sqlite3, MCAP) bags, pure Python, no ROS installation
    "threadpoolctl": "3.8.0",  # conversion pools: one BLAS thread per worker process (admlops.cpu.worker_pool)
    "optuna": "5.0.0",  # tune: the study (TPE sampler, median pruner, SQLite storage through SQLAlchemy)
    "moto": "5.2.5",
    "pytest": "9.2.0",
    "pytest-timeout": "2.4.0",
    "tqdm": "4.70.1",
    "pyyaml": "6.0.3",
    "kubernetes-validate": "1.37.0",  # tests/test_manifests.py: Kubernetes OpenAPI schemas
}

# Packages held below a bound rather than at one version.
BOUNDS: dict[str, str] = {
    "numpy": "<2",  # mmcv 2.1 and mmdeploy 1.3 are built against numpy 1.x
    "setuptools": "<70",  # mmcv's setup.py and mmengine's config loader import pkg_resources
}

# Toolchain and base images of images/*/Dockerfile: each is a build ARG whose default equals this value.
BUILD: dict[str, str] = {
    "PYTHON_VERSION": "3.11.7",  # python:<v>-slim-<DEBIAN_RELEASE> (cpu), uv-installed CPython (CUDA images)
    "DEBIAN_RELEASE": "bookworm",
    "CUDA_VERSION": "13.0.1",  # nvidia/cuda:<v>-cudnn-{devel,runtime}-<UBUNTU_RELEASE>
    "UBUNTU_RELEASE": "ubuntu22.04",
    "TORCH_CUDA": "cu130",  # https://download.pytorch.org/whl/<TORCH_CUDA>: torch 2.13.0's CUDA 13.0 build
    "TORCH_CUDA_ARCH_LIST": "8.0;8.6;8.9;9.0",  # A100, A10/A40/RTX 30xx, L4/L40/RTX 40xx, H100/H200
    "UV_VERSION": "0.13.8",  # ghcr.io/astral-sh/uv:<v>, installs the pinned CPython on Ubuntu
    "ORT_CUDA13_INDEX": "https://aiinfra.pkgs.visualstudio.com/PublicPackages/_packaging/onnxruntime-cuda-13/pypi/simple/",
}

# Images of other projects that the manifests run.
THIRD_PARTY_IMAGES: dict[str, str] = {
    "minio": "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",  # manifests/overlays/dev-minio
}


def requirement(name: str) -> str:
    """``name`` with its pin as a pip requirement: ``torch==2.13.0``, ``numpy<2``."""
    if name in PACKAGES:
        return f"{name}=={PACKAGES[name]}"
    if name in BOUNDS:
        return f"{name}{BOUNDS[name]}"
    raise KeyError(f"{name!r} is not pinned in admlops/pins.py: expected one of {sorted(PACKAGES) + sorted(BOUNDS)}")


def constraints() -> str:
    """A pip constraints file of every Python package pin (``pip install -c``)."""
    return "".join(f"{requirement(name)}\n" for name in [*PACKAGES, *BOUNDS])


def shell_name(name: str) -> str:
    """The shell variable of a pin: ``kfp-kubernetes`` -> ``PIN_KFP_KUBERNETES``."""
    return "PIN_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def shell_exports() -> str:
    """``export PIN_...=...`` lines for bash: package versions, bounds (``PIN_NUMPY='<2'``) and BUILD."""
    items = {**PACKAGES, **BOUNDS, **BUILD}
    return "".join(f"export {shell_name(k)}={shlex.quote(v)}\n" for k, v in items.items())


def build_args() -> list[str]:
    """``--build-arg NAME=VALUE`` pairs for ``docker build`` (the Dockerfile defaults hold the same values)."""
    return [arg for k, v in BUILD.items() for arg in ("--build-arg", f"{k}={v}")]


def main(argv: list[str]) -> int:
    usage = "usage: python admlops/pins.py [--shell | --constraints | --build-args]"
    mode = argv[0] if argv else "--shell"
    if len(argv) > 1 or mode not in ("--shell", "--constraints", "--build-args"):
        print(usage, file=sys.stderr)
        return 2
    if mode == "--shell":
        sys.stdout.write(shell_exports())
    elif mode == "--constraints":
        sys.stdout.write(constraints())
    else:
        sys.stdout.write(" ".join(shlex.quote(a) for a in build_args()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
