"""Running the real `lora-lab` entrypoint in subprocesses for sweep, resume and logger tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A tiny job: a few seconds of compute, the rest is imports.
TINY_JOB = ["experiment=smoke", "task.num_train=32", "task.num_test=4", "task.eval_limit=4", "eval.before=false",
            "print_summary=false"]


def cli_env(outputs: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(outputs), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "TOKENIZERS_PARALLELISM": "false", **extra}
    for key in ("LORA_LAB_RUN_TOKEN", "LORA_LAB_LAUNCH", "SLURM_RESTART_COUNT", "SUBMITIT_EXECUTOR"):
        env.pop(key, None)
    return env


def run_cli(args: list[str], outputs: Path, *, prelude: str = "", timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess:
    """`lora-lab ARGS`, run as `python -c` so a test can inject code (`prelude`) before the app starts."""
    code = f"import sys\n{prelude}\nfrom lora_lab.cli import main\nsys.argv = ['lora-lab', *sys.argv[1:]]\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], env=cli_env(outputs, **env), capture_output=True,
                          text=True, timeout=timeout)
