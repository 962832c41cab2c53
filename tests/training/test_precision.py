"""hardware.precision=bfloat16 on CPU: autocast where the CPU has bf16 units (float32 master weights for the
adapter), a one-line refusal where it has none."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import check_machine
from lora_lab.jobs.context import JobContext
from lora_lab.jobs.finetune import finetune
from lora_lab.loggers import NoLogger
from lora_lab.utils import cpu
from tests.helpers.lab_helpers import validated_cfg


def _train(run_dir: Path, precision: str) -> dict:
    cfg = validated_cfg(f"hardware.precision={precision}", "train.max_steps=8", "train.lr=3e-2", "train.batch_size=8",
                        "task.num_train=32", "method.dropout=0", "eval.before=false", "eval.after=false")
    ctx = JobContext(cfg=cfg, run_dir=run_dir, device=torch.device("cpu"), logger=NoLogger(cfg, run_dir))
    return finetune(ctx)


def test_bf16_on_cpu_autocasts_trains_and_keeps_fp32_adapter_weights(run_dir: Path) -> None:
    fp32 = _train(run_dir / "fp32", "float32")
    bf16 = _train(run_dir / "bf16", "bfloat16")
    assert bf16["final_train_loss"] < 0.8 * bf16["first_train_loss"]  # it learns
    # same seed, same batches: the first loss differs only by bf16 rounding — and it does differ, so the
    # matmuls really ran in bf16 (before, precision was ignored on CPU and the runs were bit-identical)
    gap = abs(bf16["first_train_loss"] - fp32["first_train_loss"])
    assert 0 < gap < 0.02 * fp32["first_train_loss"]
    weights = load_file(run_dir / "bf16" / "adapter" / "adapter_model.safetensors")
    assert weights and all(t.dtype == torch.float32 for t in weights.values())


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_cpu_without_bf16_units_refuses_in_one_line(monkeypatch: pytest.MonkeyPatch, precision: str) -> None:
    monkeypatch.setattr(cpu, "bf16_supported", lambda: False)
    with pytest.raises(ConfigError) as err:
        check_machine(validated_cfg(f"hardware.precision={precision}"), cuda_devices=0, cpu_cores=2, launched=False)
    assert str(err.value).startswith(f"hardware.precision='{precision}': ")
    assert str(err.value).endswith("(choices: float32)") and "\n" not in str(err.value)


def test_cpu_with_bf16_units_accepts_bf16_and_cuda_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "bf16_supported", lambda: True)
    check_machine(validated_cfg("hardware.precision=bfloat16"), cuda_devices=0, cpu_cores=2, launched=False)
    with pytest.raises(ConfigError, match=r"hardware.precision='float16'.*choices: float32, bfloat16"):
        check_machine(validated_cfg("hardware.precision=float16"), cuda_devices=0, cpu_cores=2, launched=False)
    monkeypatch.setattr(cpu, "bf16_supported", lambda: False)
    check_machine(validated_cfg("hardware.precision=bfloat16", "hardware.device=auto"), cuda_devices=1, cpu_cores=2,
                  launched=False)  # runs on the GPU

