#!/usr/bin/env bash
# Build the component images from the repository root: images/build.sh [cpu|train|deploy ...]
# (default: all three; train before deploy, which extends it). Tags come from admlops.images (src-<digest of
# the source the images are built from>), build args from admlops/pins.py; the commit is a label. Push with `docker push` after logging in; no credentials here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
eval "BUILD_ARGS=($("$PY" admlops/pins.py --build-args))"
image() { "$PY" admlops/images.py "$1"; }
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(cpu train deploy)
for name in "${names[@]}"; do
  [ -f "images/$name/Dockerfile" ] || { echo "images/$name/Dockerfile: no such image (expected cpu, train or deploy)" >&2; exit 2; }
  extra=()
  [ "$name" != deploy ] || extra=(--build-arg "TRAIN_IMAGE=$(image train)")
  echo "[images] $(image "$name")" >&2
  docker build -f "images/$name/Dockerfile" "${BUILD_ARGS[@]}" "${extra[@]}" \
    --label "org.opencontainers.image.revision=$REVISION" -t "$(image "$name")" .
done
