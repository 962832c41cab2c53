#!/usr/bin/env bash
# Refresh requirements.lock: the exact versions every install of this repo uses (setup.sh, and so CI).
#
# pip-compile (pip-tools, itself pinned here) resolves pyproject.toml's dependencies with every extra, plus the
# pins in launch/lock-pins.in (the CPU torch build, pip), on this machine's Python. Refresh on purpose: run
# launch/check_latest.sh first to see what moved and whether the fast tier still passes with it, then
#   bash launch/lock.sh && bash launch/setup.sh && python -m pytest
# and commit requirements.lock with pyproject.toml's upper bounds moved to the newest versions that passed.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP_TOOLS_VERSION=7.7.0
TOOLS=${LOCK_TOOLS_VENV:-$(mktemp -d)/pip-tools}
[ -x "$TOOLS/bin/pip-compile" ] || { python3 -m venv "$TOOLS" && "$TOOLS/bin/pip" install -q "pip-tools==$PIP_TOOLS_VERSION"; }
out=$(mktemp)
"$TOOLS/bin/pip-compile" --quiet --all-extras --strip-extras --allow-unsafe --no-emit-index-url \
    --no-emit-find-links --no-header --output-file "$out" pyproject.toml launch/lock-pins.in
{
    echo "# requirements.lock: written by launch/lock.sh (pip-compile $PIP_TOOLS_VERSION, every extra, Python $(python3 -c 'import sys; print(*sys.version_info[:2], sep=".")')); do not edit by hand."
    echo "# Used as a constraints file (pip install -c requirements.lock ...) by launch/setup.sh."
    # `torch==2.13.0` without the local `+cpu` label: it still matches the CPU wheel where one lies beside pip,
    # and stays installable from an index that has only the plain release
    sed -E 's/^(torch==[0-9.]+)\+cpu/\1/' "$out"
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
rm -f "$out"
echo "requirements.lock: $(grep -cE '^[a-zA-Z]' requirements.lock) pinned packages"
