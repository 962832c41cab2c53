"""`method=hira`: Hadamard high-rank adaptation (ICLR 2025) through peft's HiraConfig: ΔW = W0 ⊙ (B·A).

The Hadamard product with the frozen W0 lets a rank-r pair (B, A) produce an update of rank up to rank(W0)·r at
LoRA's parameter cost. B starts at zero, so the adapted model equals the base model at step 0. There is no
alpha/scale: the update is W0 ⊙ (B·A) exactly. Saved as a standard peft adapter (peft_type HIRA).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf
from peft import HiraConfig, get_peft_model

from lora_lab.config.schema import choice, positive, ranged
from lora_lab.methods.base import Method
from lora_lab.methods.lora import head_to_save, peft_task_type
from lora_lab.methods.registry import METHODS


@dataclass
class HiraSchema:
    name: str = "hira"
    r: int = positive(32)
    dropout: float = ranged(0.0, ge=0, lt=1)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"])
    init_weights: str = choice("default", "default", "gaussian")  # A: kaiming-uniform or gaussian; B: zeros
    lr: float | None = ranged(None, gt=0)  # overrides train.lr for this method


def hira_config(mcfg, task_type: str | None = "CAUSAL_LM", modules_to_save: list[str] | None = None) -> HiraConfig:
    init = mcfg.init_weights
    return HiraConfig(
        r=int(mcfg.r),
        hira_dropout=float(mcfg.dropout),
        target_modules=list(OmegaConf.to_container(mcfg.target_modules)),
        init_weights=True if init == "default" else str(init),
        task_type=task_type,
        modules_to_save=modules_to_save or None,  # a classifier's fresh head: trained in full, saved
    )


@METHODS.option
class HiraMethod(Method):
    schema = HiraSchema

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        return get_peft_model(model, hira_config(self.mcfg, peft_task_type(self.cfg), head_to_save(self.cfg, model)))
