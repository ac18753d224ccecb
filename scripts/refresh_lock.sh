#!/usr/bin/env bash
# Refresh a dependency lock on purpose: install into a scratch virtualenv, run the test suite, and
# write the lock only when every test passes.
#
#   scripts/refresh_lock.sh            the newest releases of every dependency → requirements.lock
#   scripts/refresh_lock.sh --oldest   the oldest supported transformers (pyproject's lower bound),
#                                      everything else as new as it allows → requirements-oldest.lock
#
# A lock pins every installed distribution (pip, setuptools and torch's CPU build included) in
# pip's constraints format: `pip install -c requirements.lock -e ".[dev]"` installs exactly what
# was tested. torch is the one dependency not taken at its newest: its build matters (CPU or CUDA),
# so it is named by $TORCH (default torch==2.13.0+cpu, the CPU build CI tests). $PYTHON picks the
# interpreter (default python3).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH="${TORCH:-torch==2.13.0+cpu}"

case "${1:-}" in
    "")
        lock="requirements.lock"
        pins=()
        ;;
    --oldest)
        lock="requirements-oldest.lock"
        oldest="$(sed -n 's/^ *"transformers>=\([0-9][0-9.]*\)[,"].*/\1/p' "$root/pyproject.toml")"
        [[ -n "$oldest" ]] || { echo "error: no transformers>=X in pyproject.toml" >&2; exit 2; }
        pins=("transformers==$oldest")
        ;;
    *)
        echo "usage: scripts/refresh_lock.sh [--oldest]" >&2
        exit 2
        ;;
esac

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$PYTHON" -m venv "$scratch/venv"
py="$scratch/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip setuptools wheel
"$py" -m pip install --quiet "$TORCH"
"$py" -m pip install --quiet -e "$root[dev,real]" "${pins[@]}"

echo "testing in $scratch/venv:"
"$py" -m pip list --format freeze 2>/dev/null | grep -iE '^(torch|transformers|tokenizers|peft|accelerate)=='
(cd "$root" && "$py" -m pytest -q -p no:cacheprovider)

tmp="$root/.$lock.tmp"
{
    echo "# Written by scripts/refresh_lock.sh${1:+ $1} on $(date -u +%Y-%m-%d) after the test suite passed"
    echo "# ($("$py" -c 'import platform; print(platform.python_implementation(), platform.python_version(), platform.machine())')). Use: pip install -c $lock -e \".[dev]\""
    "$py" -m pip freeze --all --exclude-editable | grep -v '^-e ' | LC_ALL=C sort -f
} >"$tmp"
mv "$tmp" "$root/$lock"
echo "wrote $lock ($(grep -vc '^#' "$root/$lock") pins)"
