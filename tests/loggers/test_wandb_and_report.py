"""`logger=wandb` in a basic-launcher multirun (both jobs in one process), read back from the offline files,
then `lora-lab-report` over the same sweep dir."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from tests.helpers.sweep_helpers import TINY_JOB
from tests.helpers.wandb_records import read_run, run_files

FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 hex chars: what a W&B API key looks like
STEPS = 3


@pytest.fixture(scope="module")
def wandb_sweep(tmp_path_factory) -> Path:
    """Two lora jobs (r=2, r=4) through the real Hydra app in THIS process, as the basic launcher runs them."""
    from lora_lab import cli

    sweep_dir = tmp_path_factory.mktemp("wandb") / "sweep"
    argv = ["lora-lab", "-m", *TINY_JOB, "method=lora", "method.r=2,4", "logger=wandb", "logger.tags=[test]",
            f"train.max_steps={STEPS}", "train.log_every=1", f"hydra.sweep.dir={sweep_dir}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_API_KEY", FAKE_KEY)
        mp.setenv("LORA_LAB_RUN_TOKEN", "test00")
        cli.hydra_app()
    return sweep_dir


def test_each_job_is_its_own_offline_wandb_run(wandb_sweep: Path) -> None:
    jobs = sorted(p for p in wandb_sweep.iterdir() if p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1"]
    runs = []
    for job in jobs:
        files = run_files(job)
        assert len(files) == 1, f"{job}: expected one W&B run inside the run dir, got {files}"
        runs.append(read_run(files[0]))
        assert json.loads((job / "metrics.json").read_text())["status"] == "ok"
    assert runs[0]["run"].run_id != runs[1]["run"].run_id
    names = [r["run"].display_name for r in runs]  # `<job num>:<hydra.job.override_dirname>`
    assert names[0].startswith("0:") and "method.r=2" in names[0]
    assert names[1].startswith("1:") and "method.r=4" in names[1]
    for run, rank in zip(runs, (2, 4), strict=True):
        assert run["run"].run_group == wandb_sweep.name  # group = the sweep
        assert run["run"].project == "lora-lab" and list(run["run"].tags) == ["test"]
        losses = [row["train_loss"] for row in run["history"] if "train_loss" in row]
        assert len(losses) == STEPS and all(isinstance(x, float) for x in losses)
        assert any("lr" in row for row in run["history"])
        assert any("after_accuracy" in row for row in run["history"])  # eval metrics
        assert run["summary"]["status"] == "ok" and "score" in run["summary"]
        assert run["config"]["method"]["r"] == rank and run["config"]["train"]["max_steps"] == STEPS  # plain config


def test_no_api_key_is_written_anywhere(wandb_sweep: Path) -> None:
    for path in wandb_sweep.rglob("*"):
        if path.is_file():
            assert FAKE_KEY.encode() not in path.read_bytes(), path


def test_report_over_the_sweep(wandb_sweep: Path, capsys) -> None:
    from lora_lab.commands.report import main

    assert main([str(wandb_sweep), "--rows", "method.r", "--cols", "task", "--metric", "final_train_loss"]) == 0
    with open(wandb_sweep / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["job"], r["status"], r["method.r"]) for r in rows] == [("0", "ok", "2"), ("1", "ok", "4")]
    table = (wandb_sweep / "results.md").read_text()
    assert "| 2 |" in table and "| 4 |" in table and "arith" in table
    assert (wandb_sweep / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failed_job_is_a_failed_wandb_run(tmp_path: Path) -> None:
    import os
    import subprocess

    empty = tmp_path / "no_data"
    empty.mkdir()
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "lora_lab", "model=tiny", "task=gsm8k", f"task.data_dir={empty}",
                           "print_summary=false", "logger=wandb", f"hydra.run.dir={run_dir}"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "failed"
    files = run_files(run_dir)
    assert len(files) == 1
    run = read_run(files[0])
    assert run["exit_code"] == 1  # the dashboard shows it failed, not finished
    assert run["summary"]["status"] == "failed" and "error" in run["summary"]
