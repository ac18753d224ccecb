#!/usr/bin/env bash
# The whole GPU check in one command (about 6 minutes on one H200): the CUDA-marked tests, then
# lrpt against PEFT on a random 1.24 B-parameter Llama-shaped base in bf16 (bench/gpu_check.py)
# at batch 16 (against float32 too), 64 and 256. Results go to ${OUT:-bench/results/gpu}/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', \
transformers.__version__)" | tee -a "$out/device.txt"
python -m pytest -q -m cuda -p no:cacheprovider -rs 2>&1 | tee "$out/cuda-tests.txt"
speed() {  # batch size, then extra arguments
    python bench/gpu_check.py --device cuda --dtype bfloat16 --batch-size "$1" "${@:2}" \
        --out "$out/speed-llama-1b-bf16-b$1.json" 2>&1 | tee -a "$out/speed.log"
}
speed 16 --against-dtype float32
speed 64 --rounds 3
speed 256 --rounds 3
