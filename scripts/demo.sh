#!/usr/bin/env bash
# The closed loop on this machine: synthetic KITTI -> convert -> train -> evaluate -> export -> benchmark,
# through the detection2d Kubeflow pipeline run locally (kfp.local) on the embedded default store.
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${ADMLOPS_STORE:-$HOME/.admlops/store}
FRAMES=${DEMO_FRAMES:-400}
export ADMLOPS_STORE=$STORE
.venv/bin/admlops data synth kitti --frames "$FRAMES" --seed 0 --out "$STORE/raw/kitti-synth"
.venv/bin/admlops run detection2d --local --store "$STORE" \
  --param source="$STORE/raw/kitti-synth" "$@"
