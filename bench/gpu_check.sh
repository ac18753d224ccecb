#!/usr/bin/env bash
# The whole GPU check in one command (about 6 minutes on one H200, plus the packed pass's): the
# CUDA-marked tests, then lrpt against PEFT on a random 1.24 B-parameter Llama-shaped base in bf16
# (bench/gpu_check.py) at batch 16 (against float32 too), 64 and 256, then the prompt's paths side
# by side (bench/packed_speed.py: packed vs shared vs naive, training step and inference, and a
# batch mixing 16 prompts vs one prompt) at 16, 64 and 256 rows, on the 1 B shape in bf16 (with
# the dense 4-D mask and both attention kernels, which choose lrpt.packed.KERNELS["cuda"]) and
# on the SmolLM2-135M shape in float32.
# Results go to ${OUT:-bench/results/gpu}/.
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
packed() {  # shape, dtype, then extra arguments
    python bench/packed_speed.py --device cuda --shape "$1" --dtype "$2" \
        --batch-sizes 16 64 256 --rounds 3 "${@:3}" --out "$out/packed-$1-$2.json" 2>&1 \
        | tee -a "$out/packed.log"
}
packed llama-1b bfloat16 --dense --kernels sdpa matmul
packed smollm2-135m float32
