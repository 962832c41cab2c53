"""What a fine-tuning method is: a schema, a job kind, and hooks the shared training loop calls.

A method changes the model (`apply`), may change how it is loaded (`model_load_kwargs`, e.g. 4-bit weights),
may bring its own optimizer (`build_optimizer`, e.g. GaLore) and may act during training (`extra_loss`,
`after_backward`, `after_optimizer_step`, e.g. pruning or sparse-mask selection). Everything else — data,
loop, evaluation, saving — is shared, so methods stay small and comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig

from lora_lab.methods.adapters import method_record, write_record
from lora_lab.training.optimizers import OPTIMIZERS


@dataclass
class NoMethodSchema:
    name: str = "none"


class Method:
    name: ClassVar[str]
    kind: ClassVar[str] = "finetune"  # finetune | eval | meta — picks the job recipe
    schema: ClassVar[type] = NoMethodSchema
    adapter_format: ClassVar[str] = "peft"  # how `save` lays out the adapter (lora_lab/methods/adapters.py)
    # hardware.data_parallel=fsdp needs an adapter that is a plain PEFT state dict and no per-step hooks
    # that read whole weights (sparse masks, projections, 4-bit storage)
    supports_fsdp: ClassVar[bool] = False

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg  # the whole validated config
        self.mcfg = cfg.method

    # ----- config -----
    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        """Cross-field rules, raised as ConfigError before any model is loaded."""

    @classmethod
    def replaced_keys(cls, cfg: DictConfig) -> dict[str, str]:
        """Keys of the training config this method does not read because a setting of its own takes their place,
        and why (jobs/ignored_keys.py refuses or records a user's key here): `train.lr` while `method.lr` is set,
        as `learning_rate` reads them."""
        lr = cfg.method.get("lr")
        return {"train.lr": f"method={cls.name} reads method.lr={lr} instead"} if lr is not None else {}

    # ----- model -----
    def model_load_kwargs(self) -> dict[str, Any]:
        return {}

    def prepare_loaded(self, model: torch.nn.Module) -> torch.nn.Module:
        """Adjust the model right after loading, before anything runs it (QLoRA: keep CPU 4-bit layers trainable)."""
        return model

    def place(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """Put the loaded model on the run's device. A method whose loader lays the weights out itself (QLoRA:
        bitsandbytes places 4-bit storage on load, and it cannot be moved) overrides this."""
        return model.to(device)

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    # ----- training -----
    def trainable_parameters(self, model: torch.nn.Module) -> list[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def learning_rate(self) -> float:
        lr = self.mcfg.get("lr")
        return float(lr) if lr is not None else float(self.cfg.train.lr)

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        return OPTIMIZERS.get(self.cfg.train.optimizer)(
            self.trainable_parameters(model), self.learning_rate(), self.cfg.train.weight_decay)

    def extra_loss(self, model: torch.nn.Module) -> torch.Tensor | None:
        return None

    def after_backward(self, model: torch.nn.Module, step: int) -> None:
        pass

    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        pass

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        return {}

    # ----- persistence -----
    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        model.save_pretrained(str(out_dir))
        write_record(out_dir, self.record())

    def record(self) -> dict[str, Any]:
        """The method record saved beside the adapter: method, format, hyper-parameters."""
        return method_record(self.cfg, self.adapter_format)

    def state_dict(self) -> dict[str, Any]:
        """Method state that a checkpoint must carry besides the weights (masks, schedules)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

