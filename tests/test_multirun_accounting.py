"""A multirun counts each job as what it was in this launch (ok, skipped, refused, failed, interrupted, missing),
from the attempt records its jobs wrote, never from a metrics.json an earlier launch left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.sweep_helpers import TINY_JOB, cli_env, run_cli

CODE = "import sys\nfrom lora_lab.cli import main\nsys.argv = ['lora-lab', *sys.argv[1:]]\nmain()\n"


def sweep_args(sweep: Path, *extra: str, max_steps: int = 1) -> list[str]:
    return ["-m", *TINY_JOB, f"train.max_steps={max_steps}", f"hydra.sweep.dir={sweep}", *extra]


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_a_rerun_into_the_same_sweep_dir_counts_skipped_and_refused_jobs(tmp_path: Path, launcher: str) -> None:
    sweep = tmp_path / "sweep"
    first = run_cli(sweep_args(sweep, "seed=0"), tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    # job 0 is done with this config: skipped, job 1 is new: ok
    again = run_cli(sweep_args(sweep, "seed=0,1", f"hydra/launcher={launcher}"), tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"lora-lab: multirun {sweep}: 2 jobs, 1 ok, 0 failed, 1 skipped (already done)\n" in again.stdout

    # another config into the same dir: both jobs refused, and their earlier ok results do not count as this run
    changed = run_cli(sweep_args(sweep, "seed=0,1", f"hydra/launcher={launcher}", max_steps=2), tmp_path)
    assert changed.returncode == 1, changed.stderr[-3000:]
    assert f"lora-lab: multirun {sweep}: 2 jobs, 0 ok, 0 failed, 2 refused\n" in changed.stderr
    for num in (0, 1):
        assert f"  job {num} refused: hydra.run.dir='{sweep / str(num)}': holds a finished result of another " \
               "config (train.max_steps: 1 -> 2)" in changed.stderr
        assert json.loads((sweep / str(num) / "metrics.json").read_text())["status"] == "ok"  # kept
    assert "Traceback" not in changed.stderr


# Injected into the multirun's process: SIGINT arrives during training step 3 of the first job.
SIGINT_DURING_STEP_3 = """
import os, signal
from lora_lab.training import loop
_nonfinite = loop.nonfinite
def _signal_then_check(loss, norm, _n=[0]):
    _n[0] += 1
    if _n[0] == 3:
        os.kill(os.getpid(), signal.SIGINT)
    return _nonfinite(loss, norm)
loop.nonfinite = _signal_then_check
"""


def test_an_interrupted_sweep_counts_the_interrupted_job_and_the_jobs_it_never_ran(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(sweep_args(sweep, "seed=0,1", max_steps=4), tmp_path, prelude=SIGINT_DURING_STEP_3)
    assert result.returncode == 130, result.stderr[-3000:]
    assert f"lora-lab: multirun {sweep} ended early: 2 jobs, 0 ok, 0 failed, 1 interrupted, 1 missing\n" \
           in result.stderr
    assert "  job 0 interrupted: interrupted by SIGINT" in result.stderr
    assert "  job 1 missing: no record of this launch: never started, or killed before it began" in result.stderr


def test_a_job_killed_before_it_wrote_anything_is_missing(tmp_path: Path) -> None:
    """Local launcher: job 1's process is SIGKILLed as soon as its attempt is recorded as running."""
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY_JOB, "train.max_steps=1,400", f"hydra.sweep.dir={sweep}", "hydra/launcher=local"]
    process = subprocess.Popen([sys.executable, "-c", CODE, *args], env=cli_env(tmp_path), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    def records() -> list[Path]:  # not the writer's temp file beside a record
        return [p for p in (sweep / "1" / ".attempts").glob("*.json") if not p.name.startswith(".")]

    try:
        deadline = time.monotonic() + 240
        while not records():
            assert process.poll() is None and time.monotonic() < deadline, "job 1 never started"
            time.sleep(0.05)
        record = json.loads(records()[0].read_text())
        assert record["outcome"] == "running" and record["pid"] != process.pid
        os.kill(record["pid"], signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode != 0
    assert f"lora-lab: multirun {sweep} ended early: 2 jobs, 1 ok, 0 failed, 1 missing\n" in stderr
    assert f"  job 1 missing: started (pid {record['pid']} on " in stderr and "recorded no outcome: killed?" in stderr
    assert not (sweep / "1" / "metrics.json").exists()
    assert "Traceback" not in stderr  # the launcher's error for the dead job is one line, not its traceback
    assert "lora-lab: multirun stopped: a job ended without a result" in stderr
