"""A run without a terminal (SLURM, nohup, CI) is watchable: progress lines in the run dir's train.log and on
stdout, every train.log_every steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

LINE = re.compile(r"^step (\d+)/6 loss \d+\.\d{4} lr \S+ tokens/s \d+\.\d elapsed \d+:\d\d:\d\d eta \d+:\d\d:\d\d$")


def test_progress_lines_reach_the_run_dir_log_and_redirected_stdout(tmp_path: Path) -> None:
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    stdout = tmp_path / "job.out"
    with stdout.open("w") as out:  # stdout is a file, as under sbatch/nohup
        proc = subprocess.run(
            [sys.executable, "-m", "lora_lab", "experiment=smoke", "train.max_steps=6", "train.log_every=2",
             "task.num_train=16", "eval.before=false", "eval.after=false", "print_summary=false"],
            env=env, stdout=out, stderr=subprocess.PIPE, text=True, timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (log,) = (tmp_path / "runs").rglob("train.log")
    lines = log.read_text().splitlines()
    assert [int(LINE.match(line).group(1)) for line in lines] == [2, 4, 6], lines
    assert [line for line in stdout.read_text().splitlines() if line.startswith("step ")] == lines
