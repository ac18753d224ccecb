#!/usr/bin/env bash
# The whole GPU check in one command (about 5 minutes on one recent GPU): the CUDA-marked tests,
# then lrpt against PEFT on a random 1.24 B-parameter Llama-shaped base in bf16
# (bench/gpu_check.py). Results go to ${OUT:-bench/results/gpu}/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
python -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tee "$out/cuda-tests.txt"
python bench/gpu_check.py --device cuda --dtype bfloat16 --out "$out/speed-llama-1b-bf16.json"
