"""`method=sparse_lora`: LoRA whose A and B factors are pruned while training, with an optional L1 term.

The factors are pruned to the schedule's sparsity (`pruning.py`: one-shot, or Zhu & Gupta's cubic ramp from
`start_step` to `end_step`) by a rule: per-tensor magnitude, global top-k, whole rank components or whole
input/output units. Masks only shrink and are re-applied after every optimizer step, so pruned entries stay
exactly zero through Adam's momentum and into the saved adapter: a standard peft LoRA adapter with zeros,
loadable with plain `peft.PeftModel.from_pretrained`.

L1 is a proximal step, not a loss term: after each optimizer step every factor entry is soft-thresholded by
lr·λ (the proximal operator of λ·Σ|θ| at the step's learning rate), which sets small entries to exactly zero —
a penalty in the loss only pushes them towards zero. The train loss is therefore the task loss alone, and the
penalty λ·Σ|θ| is reported on its own (`l1_penalty`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import choice, positive, ranged
from lora_lab.methods.lora import LoraMethod, LoraSchema
from lora_lab.methods.pruning import RULES, SCHEDULES, PruneWindow
from lora_lab.methods.registry import METHODS

FACTOR_KEYS = ("lora_A", "lora_B")


@dataclass
class SparseLoraSchema(LoraSchema):
    name: str = "sparse_lora"
    target_sparsity: float = ranged(0.5, ge=0, lt=1)  # fraction of zeros in every A and B at the end of the schedule
    schedule: str = choice("cubic", "cubic", "oneshot")
    start_step: int | None = ranged(None, ge=0)  # null: 10% of train.max_steps
    end_step: int | None = ranged(None, ge=0)  # null: 60% of train.max_steps (cubic only)
    prune_every: int = positive(1)  # steps between pruning events (cubic)
    pruning: str = choice("magnitude", *RULES.names())  # which entries go (pruning.py)
    l1_lambda: float = ranged(0.0, ge=0)  # λ of λ·Σ|θ|, applied as a proximal step (soft threshold lr·λ)


def prune_window(cfg) -> PruneWindow:
    m, last = cfg.method, int(cfg.train.max_steps) - 1
    start = int(m.start_step) if m.start_step is not None else int(0.1 * cfg.train.max_steps)
    end = int(m.end_step) if m.end_step is not None else max(start, min(last, int(0.6 * cfg.train.max_steps)))
    return PruneWindow(start=start, end=end, every=int(m.prune_every), target=float(m.target_sparsity))


def lora_factors(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if any(f".{k}." in n for k in FACTOR_KEYS)]


@METHODS.option
class SparseLoraMethod(LoraMethod):
    supports_fsdp = False
    schema = SparseLoraSchema

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)  # LoRA's own rules first
        m = cfg.method
        SCHEDULES.get(m.schedule)
        w, last = prune_window(cfg), int(cfg.train.max_steps) - 1
        if not 0 <= w.start <= last:
            raise ConfigError("method.start_step", m.start_step, f"must be in [0, train.max_steps-1={last}]")
        if m.schedule == "cubic" and not w.start <= w.end <= last:
            raise ConfigError("method.end_step", m.end_step,
                              f"must be in [start_step={w.start}, train.max_steps-1={last}] to reach the target")

    def __init__(self, cfg):
        super().__init__(cfg)
        self.window = prune_window(cfg)
        self.rule = RULES.get(self.mcfg.pruning)
        self.masks: dict[str, torch.Tensor] = {}
        self._optimizer: torch.optim.Optimizer | None = None
        self._step_lr = 0.0

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        self._model = super().apply(model)
        return self._model

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        self._optimizer = super().build_optimizer(model)  # kept to read each step's scheduled learning rate
        return self._optimizer

    def after_backward(self, model: torch.nn.Module, step: int) -> None:
        if self._optimizer is not None:  # the rate this step's update uses (the scheduler moves after it)
            self._step_lr = float(self._optimizer.param_groups[0]["lr"])

    @torch.no_grad()
    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        factors = lora_factors(model)
        threshold = self._step_lr * float(self.mcfg.l1_lambda)
        if threshold > 0:  # proximal step of λ·Σ|θ|: sign(w)·max(|w| − lr·λ, 0), exact zeros included
            for _, param in factors:
                param.copy_(torch.nn.functional.softshrink(param, threshold))
        sparsity = SCHEDULES.get(self.mcfg.schedule)(step, self.window)
        if sparsity is not None:
            self.masks = self.rule(factors, sparsity, self.masks)
        for name, param in factors:
            if name in self.masks:
                param.mul_(self.masks[name].to(param.device))

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        factors = [p for _, p in lora_factors(model)]
        total = sum(p.numel() for p in factors)
        nonzero = sum(int(torch.count_nonzero(p)) for p in factors)
        metrics = {"lora_sparsity": 1.0 - nonzero / max(total, 1), "lora_nonzero_params": nonzero}
        if self.mcfg.l1_lambda:  # the objective's L1 term, kept out of the reported (task) train loss
            metrics["l1_penalty"] = float(self.mcfg.l1_lambda) * float(sum(p.detach().abs().sum() for p in factors))
        return metrics

    def record(self) -> dict[str, Any]:
        sparsity = self.extra_metrics(self._model)["lora_sparsity"] if hasattr(self, "_model") else None
        return super().record() | {"achieved_sparsity": sparsity}

    def state_dict(self) -> dict[str, Any]:
        return {"masks": {n: m.cpu() for n, m in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = dict(state.get("masks", {}))
