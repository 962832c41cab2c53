"""Magnitude-pruning schedules and masks, as plain functions (used by `method=sparse_lora`).

A schedule maps a finished optimizer step to the sparsity the factors should have after it, or None when that
step does not prune. `cubic` is Zhu & Gupta (2017): s_t = s_f · (1 − (1 − (t − t0)/(t1 − t0))³), pruning fast
while many weights are redundant and slowly near the target; `oneshot` prunes once at t0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lora_lab.registry import Registry


@dataclass(frozen=True)
class PruneWindow:
    start: int  # first pruning step (0-based, counted after the optimizer step)
    end: int  # step at which the target is reached (cubic)
    every: int  # steps between pruning events (cubic)
    target: float


Schedule = Callable[[int, PruneWindow], float | None]
SCHEDULES: Registry = Registry("pruning schedule", "method.schedule")


@SCHEDULES.register("cubic")
def cubic(step: int, w: PruneWindow) -> float | None:
    if step < w.start or step > w.end:
        return None
    if step != w.end and (step - w.start) % w.every:
        return None
    if w.end == w.start:
        return w.target
    progress = (step - w.start) / (w.end - w.start)
    return w.target * (1.0 - (1.0 - progress) ** 3)


@SCHEDULES.register("oneshot")
def oneshot(step: int, w: PruneWindow) -> float | None:
    return w.target if step == w.start else None


def magnitude_mask(weight: torch.Tensor, sparsity: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the largest-|w| entries so that `sparsity` of the tensor is zero; pruned entries never come back."""
    scores = weight.detach().abs().float()
    if keep is not None:
        scores = scores.masked_fill(~keep, -1.0)
    n_keep = weight.numel() - round(sparsity * weight.numel())
    mask = torch.zeros(weight.numel(), dtype=torch.bool, device=weight.device)
    if n_keep > 0:
        mask[torch.topk(scores.flatten(), n_keep, sorted=False).indices] = True
    mask = mask.view_as(weight)
    return mask if keep is None else mask & keep
