"""The entrypoint as a user runs it: subprocesses of `lora-lab` / `python -m lora_lab`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SMOKE = ["experiment=smoke", "train.max_steps=2", "task.num_train=16", "task.eval_limit=4", "print_summary=false"]


def run_cli(args: list[str], outputs: Path, *, module: bool = True, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(outputs), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", **extra_env}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    command = [sys.executable, "-m", "lora_lab", *args] if module else ["lora-lab", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def metrics_files(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))]


def test_multirun_over_two_methods_writes_two_run_dirs(tmp_path: Path) -> None:
    result = run_cli(["-m", *SMOKE, "method=lora,none"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = metrics_files(tmp_path / "multiruns")
    assert sorted(m["method"] for m in found) == ["lora", "none"]
    assert all(m["status"] == "ok" for m in found)
    lora_dir = next(p.parent for p in (tmp_path / "multiruns").rglob("metrics.json")
                    if json.loads(p.read_text())["method"] == "lora")
    assert (lora_dir / "adapter" / "adapter_config.json").is_file()
    assert (lora_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (lora_dir / ".hydra" / "overrides.yaml").is_file()


@pytest.mark.parametrize("launcher", ["basic", "local"])
def test_a_failing_job_in_a_multirun_is_recorded_the_others_finish_and_the_sweep_exits_1(
        tmp_path: Path, launcher: str) -> None:
    # gsm8k without data_dir (LORA_LAB_DATA unset) needs the hub, which tests never reach: that job fails cleanly
    generic = ["model=tiny", "train.max_steps=2", "task.eval_limit=4", "print_summary=false"]
    result = run_cli(["-m", *generic, "method=none", "task=arith,gsm8k", f"hydra/launcher={launcher}"], tmp_path,
                     LORA_LAB_DATA="")
    assert result.returncode == 1, result.stderr[-2000:]
    by_task = {m.get("task"): m for m in metrics_files(tmp_path / "multiruns")}
    assert by_task["arith"]["status"] == "ok"
    assert by_task["gsm8k"]["status"] == "failed" and "task.data_dir" in by_task["gsm8k"]["error"]
    sweep = next((tmp_path / "multiruns").iterdir())
    assert f"lora-lab: multirun {sweep}: 2 jobs, 1 ok, 1 failed" in result.stderr
    assert "job 1 failed: task.data_dir" in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_output_folder_is_one_line_before_hydra_creates_the_run_dir(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    result = run_cli(["model=tiny", "method=none"], tmp_path / "a_file" / "outputs")
    assert result.returncode == 2
    assert result.stderr.startswith(f"lora-lab: disk error: {tmp_path / 'a_file' / 'outputs' / 'runs'}")
    assert result.stderr.strip().endswith(f"{tmp_path / 'a_file'} is not a folder")
    assert "Traceback" not in result.stderr


def test_bad_key_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    result = run_cli([*SMOKE, "+method.rnak=4"], tmp_path, module=False)
    assert result.returncode == 2
    assert "method.rnak" in result.stderr and "unknown key" in result.stderr and "alpha" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_the_config_groups(tmp_path: Path) -> None:
    result = run_cli(["--help"], tmp_path, module=False)
    assert result.returncode == 0
    for group in ("model:", "task:", "method:", "metric:", "hardware:", "logger:", "experiment:"):
        assert group in result.stdout


def test_two_runs_started_together_get_different_dirs(tmp_path: Path) -> None:
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    evaluate = [arg for arg in SMOKE if not arg.startswith("train.")]  # method=none reads no train key
    procs = [subprocess.Popen([sys.executable, "-m", "lora_lab", *evaluate, "method=none"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=600) for p in procs] == [0, 0]
    assert len(list((tmp_path / "runs").iterdir())) == 2
