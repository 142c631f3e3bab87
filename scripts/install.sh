#!/usr/bin/env bash
# Install the ADMLOps environment into .venv (idempotent: a second run takes seconds).
#
# Why these steps and this order (measured on a 2-core x86_64 machine, Python 3.11):
#  * torch 2.13.0 CPU: torch 2.14 headers break mmcv 2.1.0's C++17 build.
#  * mmcv 2.1.0 has no wheel for torch 2.13, so it is built from source with CPU ops
#    (~18 min on 2 cores the first time; pip caches the wheel, later installs take seconds).
#    Its setup.py imports pkg_resources, hence setuptools<70 and --no-build-isolation
#    (mmengine imports pkg_resources too, so the venv keeps setuptools<70).
#  * mmdeploy 1.3.1 pins protobuf<=3.20.2 but kfp 2.17 needs protobuf>=6: kfp goes in last
#    and the export path still works with protobuf 6 (pip check complains; that is expected).
# Every version comes from admlops/pins.py (the one place; the images read it too).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${ADMLOPS_VENV:-.venv}
STAMP="$VENV/.admlops-installed"
HASH=$(cat scripts/install.sh pyproject.toml admlops/pins.py 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
eval "$("$VENV/bin/python" admlops/pins.py --shell)"   # PIN_TORCH=2.13.0, PIN_NUMPY='<2', ...
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
echo "[install] base tools" >&2
pip install -q wheel ninja
echo "[install] torch $PIN_TORCH (CPU)" >&2
pip install -q "torch==$PIN_TORCH" "numpy$PIN_NUMPY"
pip install -q "mmengine==$PIN_MMENGINE"
if ! "$VENV/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
  echo "[install] mmcv $PIN_MMCV with CPU ops (first time: ~18 min source build on 2 cores)" >&2
  pip install -q "setuptools$PIN_SETUPTOOLS"   # torch/mmengine pull a setuptools without pkg_resources
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} pip install -q --no-build-isolation "mmcv==$PIN_MMCV"
fi
echo "[install] OpenMMLab, ONNX Runtime, OpenVINO" >&2
# openvino and nncf (OpenVINO int8) are the CPU deploy backend beside ONNX Runtime (admlops.backends);
# onnxruntime.quantization (ONNX Runtime int8) imports ml_dtypes, which onnxruntime does not declare
pip install -q "mmdet==$PIN_MMDET" "mmdet3d==$PIN_MMDET3D" "mmdeploy==$PIN_MMDEPLOY" \
  "onnxruntime==$PIN_ONNXRUNTIME" "openvino==$PIN_OPENVINO" "nncf==$PIN_NNCF" "ml-dtypes==$PIN_ML_DTYPES" "numpy$PIN_NUMPY"
echo "[install] kfp, storage, tracking, test tools" >&2
# pyarrow 20 works with numpy 1.x (pyarrow 26 needs numpy 2; mmcv and mmdeploy need numpy<2);
# kubernetes-validate checks manifests/ against the Kubernetes OpenAPI schemas (tests/test_manifests.py);
# kubeflow-trainer-api is Kubeflow Trainer's pydantic models, which train-distributed renders its TrainJob with
pip install -q "kfp==$PIN_KFP" "kfp-kubernetes==$PIN_KFP_KUBERNETES" "kubeflow-trainer-api==$PIN_KUBEFLOW_TRAINER_API" \
  "pyarrow==$PIN_PYARROW" "boto3==$PIN_BOTO3" \
  "wandb==$PIN_WANDB" "optuna==$PIN_OPTUNA" "rosbags==$PIN_ROSBAGS" "threadpoolctl==$PIN_THREADPOOLCTL" "torch-pruning==$PIN_TORCH_PRUNING" "moto[server]==$PIN_MOTO" "pytest==$PIN_PYTEST" "pytest-timeout==$PIN_PYTEST_TIMEOUT" \
  "tqdm==$PIN_TQDM" "pyyaml==$PIN_PYYAML" "kubernetes-validate==$PIN_KUBERNETES_VALIDATE" "numpy$PIN_NUMPY"
# mmengine resolves `mmdet::` config bases through pkg_resources, which setuptools>=70 dropped
# and which some packages above upgrade past: pin it back last.
pip install -q "setuptools$PIN_SETUPTOOLS"
pip install -q --no-deps -e .
# Debian's chromium renders the analysis report in a headless-browser test; it needs root to install,
# so elsewhere that one test is skipped with its reason.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[install] chromium (for the report rendering test)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "[install] chromium could not be installed: the browser test will be skipped" >&2
fi
# tests/test_manifests.py builds manifests/ with `kustomize build` or `kubectl kustomize` (kustomize v5; this
# machine kind ships kubectl 1.32 with it). No reachable registry packages a current one (Debian's
# kubernetes-client is kubectl 1.20, kustomize v2), so where neither exists those tests are skipped, saying why.
if ! command -v kustomize >/dev/null && ! command -v kubectl >/dev/null; then
  echo "[install] no kustomize or kubectl on PATH: the manifest build tests will be skipped" >&2
fi
echo "$HASH" > "$STAMP"
echo "[install] done: $VENV" >&2
