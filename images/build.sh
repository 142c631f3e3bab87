#!/usr/bin/env bash
# Build the component images from the repository root: images/build.sh [cpu|train|deploy ...]
# (default: all three; train before deploy, which extends it). Tags come from admlops.images (the project
# version), build args from admlops/pins.py. Push with `docker push` after logging in; no credentials here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
eval "BUILD_ARGS=($("$PY" admlops/pins.py --build-args))"
image() { PYTHONPATH=. "$PY" -c "from admlops.images import IMAGES; print(IMAGES['$1'])"; }
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(cpu train deploy)
for name in "${names[@]}"; do
  [ -f "images/$name/Dockerfile" ] || { echo "images/$name/Dockerfile: no such image (expected cpu, train or deploy)" >&2; exit 2; }
  extra=()
  [ "$name" != deploy ] || extra=(--build-arg "TRAIN_IMAGE=$(image train)")
  echo "[images] $(image "$name")" >&2
  docker build -f "images/$name/Dockerfile" "${BUILD_ARGS[@]}" "${extra[@]}" -t "$(image "$name")" .
done
