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
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=${ADMLOPS_VENV:-.venv}
STAMP="$VENV/.admlops-installed"
HASH=$(cat scripts/install.sh pyproject.toml 2>/dev/null | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@"; }
echo "[install] base tools" >&2
pip install -q wheel ninja
echo "[install] torch 2.13.0 (CPU)" >&2
pip install -q torch==2.13.0 'numpy<2'
pip install -q mmengine==0.10.7
if ! "$VENV/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
  echo "[install] mmcv 2.1.0 with CPU ops (first time: ~18 min source build on 2 cores)" >&2
  pip install -q 'setuptools<70'   # torch/mmengine pull a setuptools without pkg_resources
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2} pip install -q --no-build-isolation mmcv==2.1.0
fi
echo "[install] OpenMMLab, ONNX Runtime" >&2
pip install -q mmdet==3.3.0 mmdet3d==1.4.0 mmdeploy==1.3.1 onnxruntime==1.26.0 'numpy<2'
echo "[install] kfp, storage, tracking, test tools" >&2
# pyarrow 20 works with numpy 1.x (pyarrow 26 needs numpy 2; mmcv and mmdeploy need numpy<2)
pip install -q kfp==2.17.0 kfp-kubernetes==2.17.0 pyarrow==20.0.0 boto3==1.44.5 wandb==0.31.0 'moto[server]==5.2.5' \
  pytest==9.2.0 pytest-timeout==2.4.0 tqdm==4.70.1 pyyaml==6.0.3 'numpy<2'
# mmengine resolves `mmdet::` config bases through pkg_resources, which setuptools>=70 dropped
# and which some packages above upgrade past: pin it back last.
pip install -q 'setuptools<70'
pip install -q --no-deps -e .
# Debian's chromium renders the analysis report in a headless-browser test; it needs root to install,
# so elsewhere that one test is skipped with its reason.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "[install] chromium (for the report rendering test)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
    || echo "[install] chromium could not be installed: the browser test will be skipped" >&2
fi
echo "$HASH" > "$STAMP"
echo "[install] done: $VENV" >&2
