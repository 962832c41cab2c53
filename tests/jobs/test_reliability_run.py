"""Trustworthy runs: a diverged, interrupted or refused job says so; a run dir holds one config and one writer;
every key with a domain is checked before anything heavy loads; every JSON written is strict."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lora_lab.config.errors import ConfigError, DataError, Diverged
from lora_lab.config.validate import check_machine
from lora_lab.jobs import run_job
from lora_lab.jobs.run_dir import CONFIG_FILE, HYDRA_OF_RESULT, LOCK_FILE, acquire_lock, release_lock
from lora_lab.training import checkpoint as ckpt
from lora_lab.utils.io import atomic_write_json
from tests.helpers.lab_helpers import tiny_cfg, validated_cfg

EVAL_ONLY = ("method=none", "eval.before=false")


def strict_json(path: Path) -> dict:
    """Parse as strict JSON: NaN/Infinity are not JSON."""
    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}")
    return json.loads(path.read_text(), parse_constant=refuse)


# ----- strict JSON -----

def test_json_writer_stores_non_finite_numbers_as_null_at_any_depth(tmp_path: Path) -> None:
    import numpy as np
    import torch

    atomic_write_json(tmp_path / "x.json", {"losses": [1.0, float("nan"), float("inf")], "nested": {"v": (-float("inf"),)},
                                            "np": np.float32(2.5), "t": torch.tensor(float("nan")), "s": "NaN"})
    assert strict_json(tmp_path / "x.json") == {"losses": [1.0, None, None], "nested": {"v": [None]}, "np": 2.5,
                                                "t": None, "s": "NaN"}


# ----- domains, checked generically before anything loads -----

@pytest.mark.parametrize("override,key,allowed", [
    ("train.lr=-1", "train.lr", "> 0"),
    ("train.lr=0", "train.lr", "> 0"),
    ("train.lr=inf", "train.lr", "finite number > 0"),
    ("train.batch_size=0", "train.batch_size", ">= 1"),
    ("train.grad_accum=0", "train.grad_accum", ">= 1"),
    ("train.max_steps=-1", "train.max_steps", ">= 0"),
    ("train.max_seq_len=1", "train.max_seq_len", ">= 16"),
    ("train.warmup_ratio=1.5", "train.warmup_ratio", "in [0, 1]"),
    ("eval.batch_size=0", "eval.batch_size", ">= 1"),
    ("eval.max_new_tokens=0", "eval.max_new_tokens", ">= 1"),
    ("task.eval_limit=0", "task.eval_limit", ">= 1"),
    ("method.r=0", "method.r", ">= 1"),
    ("method.dropout=1", "method.dropout", "in [0, 1)"),
    ("method.lr=-0.1", "method.lr", "> 0"),
    ("method=rosa method.density=0", "method.density", "in (0, 1]"),
    ("method=sparse_lora method.target_sparsity=1", "method.target_sparsity", "in [0, 1)"),
    ("hardware.num_processes=0", "hardware.num_processes", ">= 1"),
    ("hardware.num_threads=0", "hardware.num_threads", ">= 1"),
    ("train.on_nonfinite=ignore", "train.on_nonfinite", "skip_step"),
    ("hardware=cpu_ddp hardware.data_parallel=fsdp hardware.num_processes=1", "hardware.data_parallel", "ddp"),
])
def test_a_value_outside_its_domain_is_one_line_naming_key_value_and_domain(override: str, key: str,
                                                                            allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        validated_cfg(*override.split())
    message = str(err.value)
    assert message.startswith(f"{key}=") and allowed in message and "\n" not in message


@pytest.mark.parametrize("overrides,cuda,cores,key", [
    (["hardware=multi_gpu"], 0, 2, "hardware.device"),
    (["hardware=gpu"], 0, 2, "hardware.device"),
    (["hardware=cpu_ddp", "hardware.num_processes=3"], 0, 2, "hardware.num_processes"),
    (["hardware=multi_gpu"], 2, 16, "hardware.num_processes"),  # 4 ranks asked, 2 GPUs present
    (["hardware=cpu_ddp", "hardware.distributed_backend=nccl"], 0, 2, "hardware.distributed_backend"),
])
def test_hardware_this_machine_cannot_honour_is_refused(overrides: list[str], cuda: int, cores: int, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        check_machine(validated_cfg(*overrides), cuda_devices=cuda, cpu_cores=cores, launched=False)
    check_machine(validated_cfg("hardware=cpu_ddp"), cuda_devices=0, cpu_cores=2, launched=False)  # fits


def test_multi_gpu_without_cuda_fails_before_any_rank_is_spawned(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hardware.device"):
        run_job(tiny_cfg("hardware=multi_gpu"), tmp_path)
    assert not (tmp_path / ".launch").exists()
    assert strict_json(tmp_path / "metrics.json")["status"] == "failed"


# ----- divergence -----

def test_a_diverging_run_fails_with_the_step_and_saves_no_adapter(run_dir: Path) -> None:
    with pytest.raises(Diverged) as err:
        run_job(tiny_cfg("train.lr=1e30", "eval.before=false"), run_dir)
    metrics = strict_json(run_dir / "metrics.json")
    assert metrics["status"] == "failed" and metrics["error_type"] == "Diverged"
    assert metrics["step"] == err.value.step and "non-finite" in metrics["error"]
    assert not (run_dir / "adapter").exists()
    strict_json(run_dir / "train_losses.json")


def test_skip_step_drops_non_finite_updates_and_says_how_many(run_dir: Path) -> None:
    metrics = run_job(tiny_cfg("train.lr=1e30", "train.on_nonfinite=skip_step", "eval.before=false"), run_dir)
    assert metrics["train_skipped_steps"] > 0
    strict_json(run_dir / "metrics.json")
    assert None in strict_json(run_dir / "train_losses.json")["losses"]


def test_a_run_without_training_steps_reports_no_train_loss(run_dir: Path) -> None:
    metrics = run_job(tiny_cfg("train.max_steps=0", "eval.before=false", "eval.after=false"), run_dir)
    assert metrics["status"] == "ok" and metrics["train_steps"] == 0
    assert metrics["final_train_loss"] is None and metrics["first_train_loss"] is None


# ----- one config, one writer -----

def test_rerun_skips_the_same_config_and_refuses_another_naming_the_keys(run_dir: Path) -> None:
    first = run_job(tiny_cfg(*EVAL_ONLY), run_dir)
    assert first["status"] == "ok" and (run_dir / CONFIG_FILE).is_file()
    again = run_job(tiny_cfg(*EVAL_ONLY, "print_summary=true", "resume=true"), run_dir)  # uncompared keys
    assert again["skipped"] is True
    with pytest.raises(ConfigError) as err:
        run_job(tiny_cfg(*EVAL_ONLY, "task.eval_limit=4"), run_dir)
    assert "task.eval_limit: 8 -> 4" in str(err.value) and "overwrite=true" in str(err.value)
    assert strict_json(run_dir / "metrics.json")["status"] == "ok"  # the old result stands
    assert strict_json(run_dir / CONFIG_FILE)["task"]["eval_limit"] == 8


def test_a_refused_rerun_puts_the_results_hydra_config_back(run_dir: Path) -> None:
    hydra = run_dir / ".hydra"
    hydra.mkdir()
    (hydra / "overrides.yaml").write_text("- method=none\n")
    run_job(tiny_cfg(*EVAL_ONLY), run_dir)
    (hydra / "overrides.yaml").write_text("- method=none\n- task.eval_limit=4\n")  # what Hydra writes first
    with pytest.raises(ConfigError):
        run_job(tiny_cfg(*EVAL_ONLY, "task.eval_limit=4"), run_dir)
    assert (hydra / "overrides.yaml").read_text() == "- method=none\n"


def test_overwrite_moves_the_old_result_aside_and_starts_afresh(run_dir: Path) -> None:
    run_job(tiny_cfg(*EVAL_ONLY), run_dir)
    old = strict_json(run_dir / "metrics.json")
    fresh = run_job(tiny_cfg(*EVAL_ONLY, "task.eval_limit=4", "overwrite=true"), run_dir)
    assert fresh["status"] == "ok" and fresh.get("skipped") is None
    aside = list(run_dir.parent.glob(f"{run_dir.name}.replaced-*"))
    assert len(aside) == 1 and strict_json(aside[0] / "metrics.json") == old
    assert strict_json(aside[0] / CONFIG_FILE)["task"]["eval_limit"] == 8
    assert strict_json(run_dir / CONFIG_FILE)["task"]["eval_limit"] == 4


def test_resume_with_a_changed_config_names_the_changed_keys(run_dir: Path) -> None:
    atomic_write_json(run_dir / "metrics.json", {"status": "interrupted", "step": 2})
    cfg = tiny_cfg("train.max_steps=8")
    from lora_lab.jobs.run_dir import job_config

    atomic_write_json(run_dir / CONFIG_FILE, job_config(cfg))
    with pytest.raises(ConfigError) as err:
        run_job(tiny_cfg("train.max_steps=6", "resume=true"), run_dir)
    assert "checkpoint of another config" in str(err.value) and "train.max_steps: 8 -> 6" in str(err.value)


def test_a_second_writer_is_refused_and_a_dead_writers_lock_is_taken_over(run_dir: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "earlier"}
        (run_dir / LOCK_FILE).write_text(json.dumps(holder))
        with pytest.raises(ConfigError, match=f"pid {sleeper.pid}"):
            run_job(tiny_cfg(*EVAL_ONLY), run_dir)
        assert not (run_dir / "metrics.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    lock = acquire_lock(run_dir)  # the holder is gone: stale
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release_lock(lock)
    assert not lock.exists()


# ----- checkpoints -----

def test_a_truncated_checkpoint_is_one_line_naming_the_file(run_dir: Path) -> None:
    state = ckpt.checkpoint_dir(run_dir) / ckpt.STATE_FILE
    state.parent.mkdir()
    state.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError) as err:
        run_job(tiny_cfg("train.checkpoint_every=2", "eval.before=false", "eval.after=false", "resume=true"), run_dir)
    assert str(state) in str(err.value) and "\n" not in str(err.value)


def test_a_checkpoint_left_under_its_temporary_name_is_recovered(run_dir: Path) -> None:
    old = run_dir / f".{ckpt.CHECKPOINT_DIR}-old"
    old.mkdir()
    (old / ckpt.STATE_FILE).write_bytes(b"x")
    assert ckpt.has_checkpoint(run_dir) and (ckpt.checkpoint_dir(run_dir) / ckpt.STATE_FILE).is_file()


def test_a_results_own_hydra_copy_is_kept_beside_it(run_dir: Path) -> None:
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("a: 1\n")
    run_job(tiny_cfg(*EVAL_ONLY), run_dir)
    assert (run_dir / HYDRA_OF_RESULT / "config.yaml").read_text() == "a: 1\n"


@pytest.mark.parametrize("name", ["paged_adamw_8bit", "paged_adamw_32bit"])
def test_paged_optimizers_are_refused_on_a_cpu_run_in_one_line(name: str) -> None:
    from lora_lab.config.validate import check_machine

    cfg = validated_cfg(f"train.optimizer={name}")
    with pytest.raises(ConfigError, match=rf"train.optimizer='{name}': pages optimizer state .* \(choices: adamw\)"):
        check_machine(cfg, cuda_devices=0, cpu_cores=2, launched=False)
    check_machine(validated_cfg(f"train.optimizer={name}", "hardware=gpu"),
                  cuda_devices=1, cpu_cores=2, launched=False)  # on CUDA they are allowed


def test_every_optimizer_choice_is_registered_and_adamw_builds() -> None:
    import torch

    from lora_lab.config.schema import TrainConfig
    from lora_lab.training.optimizers import OPTIMIZERS

    choices = TrainConfig.__dataclass_fields__["optimizer"].metadata["choices"]
    assert sorted(choices) == sorted(OPTIMIZERS.names())
    param = torch.nn.Parameter(torch.ones(2))
    optimizer = OPTIMIZERS.get("adamw")([param], 0.1, 0.0)
    param.grad = torch.ones(2)
    optimizer.step()
    assert torch.all(param < 1)
