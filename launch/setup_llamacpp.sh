#!/usr/bin/env bash
# llama.cpp's Python client (extra `gguf-run`), for the checks that run exported GGUF files in llama.cpp itself
# (slow tests of tests/commands/test_export.py, benchmarks/bench_export_llamacpp.py). Run after launch/setup.sh.
# It compiles llama.cpp from source (about 10 min on 2 cores). GGML_NATIVE=OFF builds the portable AVX2 kernels:
# a native build on CPUs with AMX crashed in every quantised matrix product. --no-cache-dir because pip's wheel
# cache ignores CMAKE_ARGS and could hand back a native build.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
if python -c "import llama_cpp" 2>/dev/null; then
    echo "llama-cpp-python already in .venv"
    exit 0
fi
CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    python -m pip install -q -c requirements.lock --no-cache-dir "llama-cpp-python==0.3.36"
echo "llama-cpp-python built and installed in .venv"
