"""Pruning for `method=sparse_lora`: schedules (how much, when) and rules (which entries), as plain functions.

A schedule maps a finished optimizer step to the sparsity the factors should have after it, or None when that
step does not prune. `cubic` is Zhu & Gupta (2017): s_t = s_f · (1 − (1 − (t − t0)/(t1 − t0))³), pruning fast
while many weights are redundant and slowly near the target; `oneshot` prunes once at t0.

A rule turns the LoRA factors (peft's `lora_A` r×d_in and `lora_B` d_out×r weights), a sparsity and the masks so
far into new boolean masks, one per factor. Masks only shrink: an entry pruned once stays pruned.
- `magnitude`: every factor tensor keeps its own largest-|w| entries (the same fraction in each);
- `global_topk`: one top-k over all A factors and one over all B factors, so layers that matter less lose
  more (A and B are pooled apart: B starts at zero and A at Kaiming scale, one pool would empty B first);
- `rank`: whole rank components — row i of A with column i of B, scored by ‖A_i‖·‖B_:,i‖, the norm of the
  rank-1 update they add — in every module: the adapter keeps a lower rank;
- `units`: whole input units (columns of A) and output units (rows of B), scored by their norms: the adapter
  stops reading some input features and writing some outputs.
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


def keep_top(scores: torch.Tensor, sparsity: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """True for the highest scores, so that `sparsity` of the entries is False; entries already pruned
    (`keep` False) are never chosen again."""
    scores = scores.detach().float()
    if keep is not None:
        scores = scores.masked_fill(~keep, -1.0)  # scores are norms (>= 0): a pruned entry ranks last
    n_keep = scores.numel() - round(sparsity * scores.numel())
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_keep > 0:
        mask[torch.topk(scores.flatten(), n_keep, sorted=False).indices] = True
    mask = mask.view_as(scores)
    return mask if keep is None else mask & keep


def magnitude_mask(weight: torch.Tensor, sparsity: float, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the largest-|w| entries so that `sparsity` of the tensor is zero; pruned entries never come back."""
    return keep_top(weight.abs(), sparsity, keep)


Factors = list[tuple[str, torch.Tensor]]
Masks = dict[str, torch.Tensor]
Rule = Callable[[Factors, float, Masks], Masks]
RULES: Registry = Registry("pruning rule", "method.pruning")


def is_a(name: str) -> bool:
    return ".lora_A." in name


@RULES.register("magnitude")
def per_tensor_magnitude(factors: Factors, sparsity: float, keep: Masks) -> Masks:
    return {n: magnitude_mask(w, sparsity, keep.get(n)) for n, w in factors}


@RULES.register("global_topk")
def global_topk(factors: Factors, sparsity: float, keep: Masks) -> Masks:
    masks: Masks = {}
    for pool in ([f for f in factors if is_a(f[0])], [f for f in factors if not is_a(f[0])]):
        if not pool:
            continue
        flat = torch.cat([w.detach().abs().float().flatten() for _, w in pool])
        alive = torch.cat([keep[n].flatten() if n in keep else torch.ones(w.numel(), dtype=torch.bool,
                                                                         device=w.device) for n, w in pool])
        chosen = keep_top(flat, sparsity, alive)
        for (name, w), part in zip(pool, chosen.split([w.numel() for _, w in pool]), strict=True):
            masks[name] = part.view_as(w)
    return masks


def module_of(name: str) -> str:
    return name.replace(".lora_A.", ".lora_*.").replace(".lora_B.", ".lora_*.")


@RULES.register("rank")
def rank_components(factors: Factors, sparsity: float, keep: Masks) -> Masks:
    pairs: dict[str, dict[str, tuple[str, torch.Tensor]]] = {}
    for name, w in factors:
        pairs.setdefault(module_of(name), {})["A" if is_a(name) else "B"] = (name, w)
    masks: Masks = {}
    for pair in pairs.values():
        (a_name, a), (b_name, b) = pair["A"], pair["B"]
        alive = keep[a_name].any(dim=1) if a_name in keep else None
        scores = a.detach().float().norm(dim=1) * b.detach().float().norm(dim=0)  # ‖B_:,i A_i‖_F, one per rank
        components = keep_top(scores, sparsity, alive)
        masks[a_name] = components[:, None].expand_as(a).clone()
        masks[b_name] = components[None, :].expand_as(b).clone()
    return masks


@RULES.register("units")
def input_output_units(factors: Factors, sparsity: float, keep: Masks) -> Masks:
    masks: Masks = {}
    for name, w in factors:
        unit_dim = 0 if is_a(name) else 1  # A: r×d_in, a column per input; B: d_out×r, a row per output
        alive = keep[name].any(dim=unit_dim) if name in keep else None
        units = keep_top(w.detach().float().norm(dim=unit_dim), sparsity, alive)
        masks[name] = (units[None, :] if is_a(name) else units[:, None]).expand_as(w).clone()
    return masks
