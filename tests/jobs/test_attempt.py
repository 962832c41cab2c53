"""Every exit of a multirun job leaves this launch's attempt record, refusals raised by the run dir's claim
before metrics.json is touched included."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.jobs import run_job
from lora_lab.jobs.run_dir import LOCK_FILE
from lora_lab.report.job_result import LAUNCH_ENV, read_attempt
from tests.helpers.lab_helpers import tiny_cfg

EVAL_ONLY = ("method=none", "eval.before=false")


def test_a_refusal_by_another_writer_and_by_a_bad_value_is_recorded_as_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(LAUNCH_ENV, "L1")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(ConfigError):
            run_job(tiny_cfg(*EVAL_ONLY), tmp_path)
    finally:
        sleeper.kill()
        sleeper.wait()
    record = read_attempt(tmp_path, "L1")
    assert record["outcome"] == "refused" and f"pid {sleeper.pid}" in record["reason"]
    assert not (tmp_path / "metrics.json").exists()

    monkeypatch.setenv(LAUNCH_ENV, "L2")
    with pytest.raises(ConfigError):
        run_job(tiny_cfg(*EVAL_ONLY, "train.grad_accum=0"), tmp_path / "bad")
    assert read_attempt(tmp_path / "bad", "L2")["outcome"] == "refused"
    assert read_attempt(tmp_path, "L1")["outcome"] == "refused"  # one record per launch, none overwritten


def test_ok_then_skipped_and_nothing_recorded_outside_a_multirun(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(LAUNCH_ENV, raising=False)
    run_job(tiny_cfg(*EVAL_ONLY), tmp_path / "single")
    assert not (tmp_path / "single" / ".attempts").exists()

    monkeypatch.setenv(LAUNCH_ENV, "L1")
    run_job(tiny_cfg(*EVAL_ONLY), tmp_path / "job")
    monkeypatch.setenv(LAUNCH_ENV, "L2")
    assert run_job(tiny_cfg(*EVAL_ONLY), tmp_path / "job")["skipped"]
    assert read_attempt(tmp_path / "job", "L1")["outcome"] == "ok"
    assert read_attempt(tmp_path / "job", "L2")["outcome"] == "skipped"
