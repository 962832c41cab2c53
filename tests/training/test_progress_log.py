"""A run without a terminal (SLURM, nohup, CI) is watchable: progress lines in the run dir's train.log and on
stdout, every train.log_every steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def run_redirected(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """A smoke run whose stdout is a file, as under sbatch/nohup: (the process, train.log's lines, stdout's)."""
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    stdout = tmp_path / "job.out"
    with stdout.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "lora_lab", "experiment=smoke", "task.num_train=16", "print_summary=false",
             *overrides],
            env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (log,) = (tmp_path / "runs").rglob("train.log")
    return proc, log.read_text().splitlines(), stdout.read_text().splitlines()


LINE = re.compile(r"^step (\d+)/6 loss \d+\.\d{4} lr \S+ tokens/s \d+\.\d elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$")


def test_progress_lines_reach_the_run_dir_log_and_redirected_stdout(tmp_path: Path) -> None:
    _, lines, stdout = run_redirected(tmp_path, "train.max_steps=6", "train.log_every=2", "eval.before=false",
                                      "eval.after=false")
    assert [int(LINE.match(line).group(1)) for line in lines] == [2, 4, 6], lines
    assert [line for line in stdout if line.startswith("step ")] == lines


EVAL_LINE = re.compile(r"^eval (before|after): (batch \d/3|0/6 examples|6/6 examples accuracy \d\.\d{4} examples/s \d+\.\d)"
                       r"( elapsed \d+:\d\d:\d\d)?( eta \d+:\d\d:\d\d)?$")
STEP_LINE = re.compile(r"^step (\d+)/2 loss \d+\.\d{4} lr \S+ tokens/s \d+\.\d elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$")


def _shape(line: str) -> str:
    """`eval after: batch 1/3`, `eval before: 6/6 examples`, `step 2/2`: a line without its numbers that vary."""
    if match := EVAL_LINE.match(line):
        return f"eval {match.group(1)}: {match.group(2).split(' accuracy')[0]}"
    if match := STEP_LINE.match(line):
        return f"step {match.group(1)}/2"
    return f"unexpected: {line}"


def test_evaluation_progress_lines_reach_the_same_log_and_redirected_stdout(tmp_path: Path) -> None:
    """Evaluation before and after training: a first line, a line per batch done (3 batches; at most one per
    tenth, the last left to the closing line) and a closing line with the score, around the training lines."""
    proc, lines, stdout = run_redirected(tmp_path, "train.max_steps=2", "train.log_every=1", "task.eval_limit=6",
                                         "eval.batch_size=2")
    assert [_shape(line) for line in lines] == [
        "eval before: 0/6 examples", "eval before: batch 1/3", "eval before: batch 2/3", "eval before: 6/6 examples",
        "step 1/2", "step 2/2",
        "eval after: 0/6 examples", "eval after: batch 1/3", "eval after: batch 2/3", "eval after: 6/6 examples",
    ], lines
    assert stdout == lines  # the same lines on the redirected stdout
    assert "eval (" not in proc.stderr  # no tqdm bar without a terminal
