#!/usr/bin/env bash
# The short check for a session lent a GPU, run as it is from the checkout:
#
#   bash tools/gpu_check.sh [OUTPUT_DIR]
#
# 1. the layer table at batch 1 and 100 and the model table at 1 and 100
#    samples (CInC+affine against Glow), on whatever device TensorFlow
#    places them (the GPU when it sees one);
# 2. a short training run on the GPU, exported, then the export loaded on the
#    CPU by plain TensorFlow (no cinc_tfp import) to sample and score images.
#
# Reports go to OUTPUT_DIR (default: $OUT if set, else a temporary folder).
# Needs the packages of `pip install -e '.[test]'` already installed (a
# device machine may have no network).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-$(mktemp -d)}}
mkdir -p "$out"
export TF_CPP_MIN_LOG_LEVEL=2

python - <<'PY' | tee "$out/devices.txt"
import tensorflow as tf
print('TensorFlow', tf.__version__, '| GPUs:',
      tf.config.list_physical_devices('GPU') or 'none (CPU only)')
PY

python -m benchmarks layers --batch_sizes=1,100 --repeats=10 \
  --raster_repeats=1 | tee "$out/layers.md"
python -m benchmarks models --num_samples=1,100 \
  --models=CInC+affine,Glow --served_models= --repeats=5 | tee "$out/models.md"

run=$(mktemp -d)/run
python -m train.train --model_dir="$run" --steps=50 --steps_per_epoch=25 \
  --levels=2 --depth=2 --width=32 | tail -3 | tee "$out/train.txt"
python -m train.export --model_dir="$run" | tee -a "$out/train.txt"
CUDA_VISIBLE_DEVICES= python tools/served_on_cpu.py "$run/saved_model" \
  | tee "$out/served_on_cpu.txt"
echo "gpu_check: reports in $out"
