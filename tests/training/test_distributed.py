"""Data-parallel training on CPU: 2 gloo ranks under torchrun versus 1 process with the same effective batch.

Both runs are fresh `python -m lora_lab` processes, so the unseeded LoRA init draws the same numbers (and DDP
broadcasts rank 0's weights anyway). Dropout is off: ranks would otherwise draw different masks than one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.lab_helpers import REPO, TINY

COMMON = [o for o in TINY if not o.startswith("train.max_steps")] + [
    "train.max_steps=3", "method.dropout=0.0", "eval.before=false", "train.warmup_ratio=0.0",
    "train.batch_size=4", "task.eval_limit=4",
]


def _run(tmp: Path, name: str, *overrides: str) -> Path:
    run_dir = tmp / name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("SLURM_NTASKS", None)
    proc = subprocess.run([sys.executable, "-m", "lora_lab", *COMMON, *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    """One process, 2 micro-batches per step: the reference for 2 ranks x 1 micro-batch."""
    return _run(tmp_path_factory.mktemp("single"), "single", "train.grad_accum=2", "eval.after=false")


def _max_adapter_diff(a_dir: Path, b_dir: Path) -> float:
    a = load_file(str(a_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(b_dir / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    assert any(float(a[k].abs().max()) > 0 for k in a if "lora_B" in k)  # the adapter did train
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_two_gloo_ranks_match_one_process(tmp_path: Path, single: Path):
    ddp = _run(tmp_path, "ddp", "hardware=cpu_ddp", "train.grad_accum=1")

    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((ddp / "metrics.json").read_text())
    assert two["status"] == "ok" and two["world_size"] == 2
    assert two["replica_max_abs_diff"] == 0.0  # both ranks hold the same adapter after training
    # only rank 0 wrote outputs: one metrics.json, one adapter, its predictions; no rank scratch left behind
    assert (ddp / "adapter" / "adapter_model.safetensors").exists()
    assert (ddp / "predictions_after.jsonl").exists()
    assert sorted(p.name for p in (ddp / ".launch").iterdir()) == ["config.yaml"]
    assert len(list(ddp.rglob("metrics.json"))) == 1
    # same effective batch (2 ranks x 1 micro-batch == 1 process x 2 micro-batches), same data: same result
    assert one["train_tokens"] == two["train_tokens"]
    assert abs(one["first_train_loss"] - two["first_train_loss"]) < 1e-4
    assert abs(one["final_train_loss"] - two["final_train_loss"]) < 1e-4
    worst = _max_adapter_diff(single, ddp)
    assert worst < 1e-5, worst


def test_fsdp_sharded_ranks_train_the_same_adapter_as_one_process(tmp_path: Path, single: Path):
    fsdp = _run(tmp_path, "fsdp", "hardware=cpu_ddp", "hardware.data_parallel=fsdp", "train.grad_accum=1")
    metrics = json.loads((fsdp / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["world_size"] == 2 and metrics["data_parallel"] == "fsdp"
    one = json.loads((single / "metrics.json").read_text())
    assert abs(one["final_train_loss"] - metrics["final_train_loss"]) < 1e-4
    worst = _max_adapter_diff(single, fsdp)  # gathered from the shards by rank 0, same weights
    assert worst < 1e-5, worst
    assert "after_accuracy" in metrics and (fsdp / "predictions_after.jsonl").exists()  # rank 0 evaluated
    assert len(list(fsdp.rglob("metrics.json"))) == 1


@pytest.mark.parametrize("overrides,key", [
    (["method=qlora"], "hardware.data_parallel"),
    (["train.checkpoint_every=2"], "train.checkpoint_every"),
])
def test_fsdp_refuses_what_it_cannot_shard(overrides: list[str], key: str):
    from lora_lab.config.errors import ConfigError
    from tests.helpers.lab_helpers import validated_cfg

    with pytest.raises(ConfigError, match=key):
        validated_cfg("hardware=cpu_ddp", "hardware.data_parallel=fsdp", *overrides)


def test_prepare_is_a_no_op_for_one_process(tmp_path: Path):
    from lora_lab.training.distributed import prepare
    from tests.helpers.lab_helpers import tiny_cfg

    launch = prepare(tiny_cfg(), tmp_path)
    assert launch.metrics is None and launch.run_dir == tmp_path and launch.world_size == 1
    assert not torch.distributed.is_initialized()


def test_data_parallel_run_resumes_on_every_rank_from_rank0_checkpoint(tmp_path: Path):
    steps = ["train.checkpoint_every=2", "eval.after=false"]  # 3 steps: one checkpoint, at step 2
    full = _run(tmp_path, "ddp", "hardware=cpu_ddp", "train.grad_accum=1", *steps)
    assert (full / "checkpoint").is_dir()  # written by rank 0
    reference = load_file(str(full / "adapter" / "adapter_model.safetensors"))
    (full / "metrics.json").unlink()  # as if the job had been killed after the step-2 checkpoint
    resumed = _run(tmp_path, "ddp", "hardware=cpu_ddp", "train.grad_accum=1", *steps, "resume=true")
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["resumed_from_step"] == 2
    assert metrics["replica_max_abs_diff"] == 0.0  # rank 1 restored the same state as rank 0
    again = load_file(str(resumed / "adapter" / "adapter_model.safetensors"))
    worst = max(float((reference[k] - again[k]).abs().max()) for k in reference)
    assert worst < 1e-6, worst
