"""Preemption and resume: a job killed mid-training continues from its own checkpoint in the same run dir."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from lora_lab.training import checkpoint as ckpt
from tests.helpers.lab_helpers import compose_cfg, tiny_cfg
from tests.helpers.sweep_helpers import TINY_JOB, run_cli

MAX_STEPS, EVERY, KILL_AT = 30, 2, 10

# Injected into the first run: SIGKILL the process right after the step-10 checkpoint is on disk, a stand-in for
# a preemption/OOM kill that is deterministic (no race between the poller and a fast tiny model).
KILL_AFTER_CHECKPOINT = f"""
import os, signal
from lora_lab.training import checkpoint
_save = checkpoint.save_checkpoint
def _save_then_die(run_dir, **kw):
    path = _save(run_dir, **kw)
    if kw["state"].step == {KILL_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
checkpoint.save_checkpoint = _save_then_die
"""


def test_killed_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY_JOB, "eval.after=false", f"train.max_steps={MAX_STEPS}", f"train.checkpoint_every={EVERY}",
            "seed=3", f"hydra.run.dir={run_dir}"]

    killed = run_cli(args, tmp_path, prelude=KILL_AFTER_CHECKPOINT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run_dir / "metrics.json").exists()
    before = ckpt.checkpoint_meta(run_dir)
    assert before is not None and before["step"] == KILL_AT and len(before["losses"]) == KILL_AT
    assert not list(run_dir.glob(".checkpoint-*")), "no temp checkpoint dir may be left behind"

    # The rerun `lora-lab ... resume=true hydra.run.dir=<same dir>`, in-process (the CLI only composes the
    # config and calls run_job) to save an interpreter start.
    from lora_lab.jobs import run_job

    run_job(compose_cfg([*args[:-1], "resume=true"]), run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["train_steps"] == MAX_STEPS
    assert metrics["resumed_from_step"] == KILL_AT > 0
    history = json.loads((run_dir / "train_losses.json").read_text())
    assert history["resumed_from_step"] == KILL_AT
    assert len(history["losses"]) == MAX_STEPS
    assert history["losses"][:KILL_AT] == before["losses"]  # continued, not restarted from step 0
    assert metrics["first_train_loss"] == before["losses"][0]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_resume_is_automatic_only_for_requeued_jobs_with_a_checkpoint(tmp_path: Path, monkeypatch) -> None:
    cfg = tiny_cfg()
    for key in ("SLURM_RESTART_COUNT", "SUBMITIT_EXECUTOR"):
        monkeypatch.delenv(key, raising=False)
    assert not ckpt.should_resume(cfg, tmp_path)  # no checkpoint
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.pt").write_bytes(b"")
    assert not ckpt.should_resume(cfg, tmp_path)  # a fresh local run never resumes by surprise
    assert ckpt.should_resume(tiny_cfg("resume=true"), tmp_path)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM requeued this job (preemption / submitit timeout)
    assert ckpt.should_resume(cfg, tmp_path)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # a submitit job: its run dir is its own
    assert ckpt.should_resume(cfg, tmp_path)


def test_a_finished_job_is_skipped_not_redone(tmp_path: Path) -> None:
    from lora_lab.jobs import run_job

    done = {"status": "ok", "score": 0.5, "method": "lora"}
    (tmp_path / "metrics.json").write_text(json.dumps(done))
    result = run_job(tiny_cfg(), tmp_path)
    assert result["skipped"] is True and result["score"] == 0.5
    assert json.loads((tmp_path / "metrics.json").read_text()) == done  # untouched
    assert not (tmp_path / "adapter").exists()


# Injected into the run: the signal arrives during training step 3 (deterministic, unlike a timer).
SIGNAL_DURING_STEP_3 = """
import os, signal
from lora_lab.training import loop
_nonfinite = loop.nonfinite
def _signal_then_check(loss, norm, _n=[0]):
    _n[0] += 1
    if _n[0] == 3:
        os.kill(os.getpid(), signal.{name})
    return _nonfinite(loss, norm)
loop.nonfinite = _signal_then_check
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_is_a_status_with_a_checkpoint_and_resume_continues_it(tmp_path: Path, sig) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY_JOB, "eval.after=false", "train.max_steps=6", "train.checkpoint_every=2", f"hydra.run.dir={run_dir}"]
    result = run_cli(args, tmp_path, prelude=SIGNAL_DURING_STEP_3.format(name=sig.name))
    assert result.returncode == 128 + sig, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"lora-lab: interrupted: interrupted by {sig.name} after step 3" in result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["step"] == 3 and metrics["signal"] == sig.name
    assert ckpt.checkpoint_meta(run_dir)["step"] == 3  # saved at the interrupt, not only at step 2
    assert not (run_dir / "adapter").exists()

    from lora_lab.jobs import run_job

    resumed = run_job(compose_cfg([*args[:-1], "resume=true"]), run_dir)  # what `lora-lab ... resume=true` runs
    assert resumed["status"] == "ok" and resumed["resumed_from_step"] == 3 and resumed["train_steps"] == 6
