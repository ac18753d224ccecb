#!/usr/bin/env bash
# The whole GPU check in one command (about 5 minutes on one H200): the CUDA-marked tests, then
# lrpt against PEFT on a random 1.24 B-parameter Llama-shaped base in bf16 (bench/gpu_check.py),
# at batch 16 against float32 too, and at batch 64. Results go to ${OUT:-bench/results/gpu}/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', \
transformers.__version__)" | tee -a "$out/device.txt"
python -m pytest -q -m cuda -p no:cacheprovider -rs 2>&1 | tee "$out/cuda-tests.txt"
python bench/gpu_check.py --device cuda --dtype bfloat16 --against-dtype float32 \
    --out "$out/speed-llama-1b-bf16.json" 2>&1 | tee "$out/speed.log"
python bench/gpu_check.py --device cuda --dtype bfloat16 --batch-size 64 \
    --out "$out/speed-llama-1b-bf16-b64.json" 2>&1 | tee -a "$out/speed.log"
