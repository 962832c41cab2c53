"""Turn coefficients over bank members into one PEFT adapter.

Every mode receives, per LoRA module, the kept members' weights c_j and factors (A_j, B_j) and returns
the new (A, B); the caller keeps PEFT's scale alpha/r equal to the members' by setting lora_alpha for the
new rank. Modes:

- `factors` (as published): A = sum c_j A_j, B = sum c_j B_j, so B A = sum_jk c_j c_k B_j A_k - it carries
  cross terms B_j A_k between different tasks and shrinks each task's own update by c_j^2. Rank r.
- `delta` (default): the exact mixture sum_j c_j B_j A_j, written as one LoRA of rank r*k: B side by side,
  A stacked with c_j folded in.
- `svd`: the best rank-`rank` approximation of the exact mixture, via QR of the stacked factors and an SVD
  of the small (r*k x r*k) core; the d_out x d_in update is never formed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.meta.adapters import (
    AdapterReader,
    alpha_for_scale,
    factor_keys,
    lora_scale,
    read_adapter_config,
    resolve_dtype,
    write_adapter,
)
from lora_lab.registry import Registry

Factors = tuple[torch.Tensor, torch.Tensor]  # (A (r, d_in), B (d_out, r))
WeightedFactors = Iterable[tuple[float, torch.Tensor, torch.Tensor]]  # (c_j, A_j, B_j) per kept member
ModuleCombiner = Callable[[WeightedFactors, int | None], Factors]


@dataclass(frozen=True)
class CombineMode:
    combine_module: ModuleCombiner
    default_top_k: int | None  # None: every member with a nonzero coefficient
    # (member rank, number of kept members, requested rank) -> output rank
    output_rank: Callable[[int, int, int | None], int]


COMBINE_MODES: Registry[CombineMode] = Registry("combine mode", "meta.combine.mode")
DEFAULT_MODE = "delta"
USE_MODE_DEFAULT = -1  # sentinel for `top_k`: take the mode's default


def combine_factors_mixture(members: WeightedFactors, rank: int | None) -> Factors:
    """The published rule: average A's and B's separately (a running sum, so members stream through)."""
    a_new = b_new = None
    for weight, a, b in members:
        a_new = weight * a if a_new is None else a_new.add_(a, alpha=weight)
        b_new = weight * b if b_new is None else b_new.add_(b, alpha=weight)
    if a_new is None or b_new is None:
        raise ValueError("no members to combine")
    return a_new, b_new


def combine_delta_concat(members: WeightedFactors, rank: int | None) -> Factors:
    """[B_1 ... B_k] @ [c_1 A_1; ...; c_k A_k] = sum_j c_j B_j A_j exactly."""
    a_blocks, b_blocks = [], []
    for weight, a, b in members:
        a_blocks.append(weight * a)
        b_blocks.append(b)
    if not a_blocks:
        raise ValueError("no members to combine")
    return torch.cat(a_blocks, dim=0), torch.cat(b_blocks, dim=1)


def combine_delta_svd(members: WeightedFactors, rank: int | None) -> Factors:
    """Truncated SVD of B_cat A_cat from QR(B_cat) and QR(A_cat^T): B_cat A_cat = Q_b (R_b R_a^T) Q_a^T.

    Only (d x rk) and (rk x rk) matrices are factorised. `rank` defaults to the members' r.
    """
    members = list(members)
    if not members:
        raise ValueError("no members to combine")
    member_rank = members[0][1].shape[0]
    a_cat, b_cat = combine_delta_concat(members, None)
    if rank is not None and rank < 1:
        raise ConfigError("meta.combine.rank", rank, "svd mode needs a positive output rank")
    q_b, r_b = torch.linalg.qr(b_cat.to(torch.float64))
    q_a, r_a = torch.linalg.qr(a_cat.T.to(torch.float64))
    u, singular, vh = torch.linalg.svd(r_b @ r_a.T)
    rank = rank if rank is not None else member_rank
    kept = min(rank, singular.numel())
    root = singular[:kept].sqrt()
    b_new = (q_b @ u[:, :kept]) * root  # split sqrt(S) evenly so neither factor dwarfs the other
    a_new = root[:, None] * (vh[:kept] @ q_a.T)
    if kept < rank:  # a module thinner than the output rank: zero rows/cols keep every module the same r
        a_new = torch.cat([a_new, a_new.new_zeros(rank - kept, a_new.shape[1])], dim=0)
        b_new = torch.cat([b_new, b_new.new_zeros(b_new.shape[0], rank - kept)], dim=1)
    return a_new.to(torch.float32), b_new.to(torch.float32)


COMBINE_MODES.add("factors", CombineMode(combine_factors_mixture, None, lambda r, k, rank: r))
COMBINE_MODES.add("delta", CombineMode(combine_delta_concat, 8, lambda r, k, rank: r * k))
COMBINE_MODES.add(
    "svd", CombineMode(combine_delta_svd, 8, lambda r, k, rank: min(r if rank is None else rank, r * k))
)


def select_members(coefficients: np.ndarray, top_k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the `top_k` largest positive coefficients (all positive ones if None) and their weights
    renormalised to sum to 1 - dropping small members must not shrink the update."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if coefficients.ndim != 1:
        raise ValueError(f"coefficients must be one row over the bank, got shape {coefficients.shape}")
    if not np.isfinite(coefficients).all() or (coefficients < 0).any():
        raise ValueError("coefficients must be finite and non-negative")
    if top_k is not None and top_k < 1:
        raise ConfigError("meta.combine.top_k", top_k, "must be >= 1 or null (all members)")
    positive = np.flatnonzero(coefficients > 0)
    if positive.size == 0:
        raise ValueError("all coefficients are zero; nothing to combine")
    order = positive[np.argsort(-coefficients[positive], kind="stable")]
    kept = order if top_k is None else order[:top_k]
    return kept, coefficients[kept] / coefficients[kept].sum()


def combine_module(
    mode: str,
    weights: Sequence[float] | np.ndarray,
    a_factors: Sequence[torch.Tensor],
    b_factors: Sequence[torch.Tensor],
    rank: int | None = None,
) -> Factors:
    """In-memory combination of one module's factors (what `predict_adapter` does per module)."""
    members = zip((float(w) for w in weights), a_factors, b_factors, strict=True)
    return COMBINE_MODES.get(mode).combine_module(members, rank)


@dataclass
class Prediction:
    """What was written: the members used (bank indices), their renormalised weights, and the new rank."""

    out_dir: Path
    mode: str
    member_indices: list[int]
    weights: list[float]
    rank: int
    lora_alpha: float
    config: dict = field(repr=False, default_factory=dict)


def predict_adapter(
    member_dirs: Sequence[str | Path],
    coefficients: np.ndarray,
    out_dir: str | Path,
    mode: str = DEFAULT_MODE,
    top_k: int | None = USE_MODE_DEFAULT,
    rank: int | None = None,
    output_dtype: str | None = None,
) -> Prediction:
    """Combine bank members (aligned with `coefficients`) into a PEFT adapter at `out_dir`.

    Members are memory-mapped and read module by module in float32; RAM holds one module of each kept
    member plus the output. `top_k` keeps the largest coefficients (mode default: all for `factors`, 8
    otherwise) and renormalises them. `rank` is the svd output rank (default: the members' r).
    `output_dtype` defaults to the members' storage dtype.
    """
    combiner = COMBINE_MODES.get(mode)
    if len(member_dirs) != len(coefficients):
        raise ValueError(f"{len(member_dirs)} member dirs but {len(coefficients)} coefficients")
    kept, weights = select_members(
        coefficients, combiner.default_top_k if top_k == USE_MODE_DEFAULT else top_k
    )
    config = read_adapter_config(member_dirs[kept[0]])
    member_rank = int(config["r"])
    new_rank = combiner.output_rank(member_rank, len(kept), rank)
    with ExitStack() as stack:
        readers = [AdapterReader(member_dirs[i]) for i in kept]
        stack.callback(lambda: [reader.close() for reader in readers])
        dtype = resolve_dtype(output_dtype, readers[0].dtype())
        tensors: dict[str, torch.Tensor] = {}
        for module in readers[0].modules:
            members = (
                (float(w), *reader.factors(module)) for w, reader in zip(weights, readers, strict=True)
            )
            a_new, b_new = combiner.combine_module(members, new_rank)
            key_a, key_b = factor_keys(module)
            tensors[key_a], tensors[key_b] = a_new.to(dtype), b_new.to(dtype)
    new_alpha = alpha_for_scale(lora_scale(config), new_rank, bool(config.get("use_rslora")))
    config.update(r=new_rank, lora_alpha=_tidy(new_alpha), rank_pattern={}, alpha_pattern={})
    write_adapter(out_dir, tensors, config)
    return Prediction(
        Path(out_dir), mode, kept.tolist(), weights.tolist(), new_rank, config["lora_alpha"], config
    )


def _tidy(alpha: float) -> float | int:
    """Keep integral alphas as ints in the JSON, like PEFT writes them."""
    return int(round(alpha)) if math.isclose(alpha, round(alpha), rel_tol=0, abs_tol=1e-9) else alpha
