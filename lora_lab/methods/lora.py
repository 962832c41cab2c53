"""`method=lora`: low-rank adapters through peft's LoraConfig (rsLoRA and DoRA are one switch each)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import choice, positive, ranged
from lora_lab.methods.adapters import write_record
from lora_lab.methods.base import Method
from lora_lab.methods.registry import METHODS
from lora_lab.models.kinds import kind_of
from lora_lab.models.structure import head_modules

# Inits that rewrite the base weights (W0 -> W0 - B0·A0): the saved adapter is converted by peft into a plain
# rank-2r LoRA against the original base, so it still loads on an untouched model.
BASE_CHANGING_INITS = ("pissa", "olora")


@dataclass
class LoraSchema:
    name: str = "lora"
    r: int = positive(8)
    alpha: float = ranged(16.0, gt=0)
    dropout: float = ranged(0.05, ge=0, lt=1)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    bias: str = choice("none", "none", "all", "lora_only")
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: str = choice("default", "default", "gaussian", "pissa", "olora", "orthogonal")
    lr: float | None = ranged(None, gt=0)  # overrides train.lr for this method


def lora_config(mcfg, task_type: str | None = "CAUSAL_LM", modules_to_save: list[str] | None = None) -> LoraConfig:
    """Build peft's LoraConfig from plain Python values (OmegaConf containers break save_pretrained).
    `modules_to_save`: a classifier's fresh head, trained in full and saved with the adapter."""
    init = mcfg.init_lora_weights
    return LoraConfig(
        r=int(mcfg.r),
        lora_alpha=float(mcfg.alpha),
        lora_dropout=float(mcfg.dropout),
        target_modules=list(OmegaConf.to_container(mcfg.target_modules)),
        bias=str(mcfg.bias),
        use_rslora=bool(mcfg.use_rslora),
        use_dora=bool(mcfg.use_dora),
        init_lora_weights=True if init == "default" else str(init),
        task_type=task_type,
        modules_to_save=modules_to_save or None,
    )


def check_lora_keys(cfg) -> None:
    """Cross-field rules; each key's own range is its schema field's domain."""
    if cfg.method.init_lora_weights == "orthogonal" and cfg.method.r % 2:
        raise ConfigError("method.r", cfg.method.r, "init_lora_weights=orthogonal needs an even rank")


def peft_task_type(cfg) -> str | None:
    return kind_of(cfg).peft_task_type


def head_to_save(cfg, model: torch.nn.Module) -> list[str]:
    """A classifier's head (fresh weights): trained in full beside the adapter and saved with it."""
    return head_modules(model, cfg.model.kind)


@METHODS.option
class LoraMethod(Method):
    schema = LoraSchema
    supports_fsdp = True

    @classmethod
    def check(cls, cfg) -> None:
        check_lora_keys(cfg)

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        model = get_peft_model(model, lora_config(self.mcfg, peft_task_type(self.cfg), head_to_save(self.cfg, model)))
        if self.mcfg.init_lora_weights in BASE_CHANGING_INITS:
            self._initial = tempfile.TemporaryDirectory(prefix="lora-init-")
            model.save_pretrained(self._initial.name)
        return model

    def save(self, model: torch.nn.Module, out_dir: Path, state_dict: dict | None = None) -> None:
        """`state_dict`: the adapter weights gathered from a sharded (FSDP) model, saved in place of its shards."""
        initial = getattr(self, "_initial", None)  # PiSSA/OLoRA: convert against the adapter saved at init
        conversion = initial.name if initial else None
        model.save_pretrained(str(out_dir), path_initial_model_for_weight_conversion=conversion, state_dict=state_dict)
        write_record(out_dir, self.record())


__all__ = ["LoraMethod", "LoraSchema", "lora_config", "check_lora_keys"]
