"""What only a CUDA device can show (skipped elsewhere through the `gpu` marker; CI has no GPU): bf16 autocast
training on CUDA with a float32 adapter, and QLoRA's bitsandbytes 4-bit base on CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lora_lab.jobs.context import JobContext
from lora_lab.jobs.finetune import finetune
from lora_lab.loggers import NoLogger
from tests.helpers.lab_helpers import validated_cfg

pytestmark = pytest.mark.gpu


def _run(run_dir: Path, *overrides: str) -> dict:
    cfg = validated_cfg("hardware=gpu", "train.max_steps=8", "train.lr=3e-2", "task.num_train=64",
                        "task.eval_limit=8", "eval.before=false", *overrides)
    ctx = JobContext(cfg=cfg, run_dir=run_dir, device=torch.device("cuda"), logger=NoLogger(cfg, run_dir))
    return finetune(ctx)


def test_lora_trains_in_bf16_on_cuda_with_a_float32_adapter(run_dir: Path) -> None:
    from safetensors.torch import load_file

    metrics = _run(run_dir)
    assert metrics["final_train_loss"] < metrics["first_train_loss"]
    weights = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values())


def test_qlora_keeps_a_4bit_base_on_cuda_and_learns(run_dir: Path) -> None:
    metrics = _run(run_dir, "method=qlora")
    assert metrics["base_weight_bits"] == 4
    assert metrics["final_train_loss"] < metrics["first_train_loss"]
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
