"""The optimizer and learning-rate schedule of one training run, as one object with one state.

Built once per run — fresh, then restored from a checkpoint — and handed to the loop, which steps it,
and to checkpoints, which save its state; so neither the loop nor the checkpoint code builds its own copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from transformers import get_scheduler


def build_scheduler(optimizer: torch.optim.Optimizer, tcfg: DictConfig):
    return get_scheduler(
        tcfg.scheduler, optimizer, num_warmup_steps=math.ceil(tcfg.warmup_ratio * tcfg.max_steps),
        num_training_steps=tcfg.max_steps,
    )


@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler

    @classmethod
    def build(cls, model: torch.nn.Module, method, cfg: DictConfig) -> Optimization:
        """The method's optimizer over its trainable parameters (GaLore brings its own), and the schedule of
        `train.scheduler` over `train.max_steps`."""
        optimizer = method.build_optimizer(model)
        return cls(optimizer, build_scheduler(optimizer, cfg.train))

    def step(self, *, update: bool) -> None:
        """One optimizer step (skipped when `update` is False: a dropped non-finite step), then the schedule
        advances either way, so the learning rate stays in step with the step count."""
        if update:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
