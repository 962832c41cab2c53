"""Turn coefficients over bank members into one PEFT adapter.

A mode is a per-module *mixer* that folds in the kept members one at a time (weight c_j, factors A_j, B_j)
and then yields the new (A, B); the caller keeps PEFT's scale alpha/r equal to the members' by setting
lora_alpha for the new rank. Modes:

- `factors` (as published, by the meta-generation paper and by LoraHub, Huang et al. 2023, whose composition is
  exactly this: A = sum w_j A_j, B = sum w_j B_j, with free, signed weights): B A = sum_jk c_j c_k B_j A_k - it
  carries cross terms B_j A_k between different tasks and shrinks each task's own update by c_j^2. Rank r.
- `delta` (default): the exact mixture sum_j c_j B_j A_j, written as one LoRA of rank r*k: B side by side,
  A stacked with c_j folded in.
- `svd`: the best rank-`rank` approximation of the exact mixture, via QR of the stacked factors and an SVD
  of the small (r*k x r*k) core; the d_out x d_in update is never formed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.meta.lora_tensors import (
    AdapterReader,
    alpha_for_scale,
    factor_keys,
    lora_scale,
    read_adapter_config,
    resolve_dtype,
    write_adapter,
)
from lora_lab.meta.threads import torch_threads
from lora_lab.registry import Registry

Factors = tuple[torch.Tensor, torch.Tensor]  # (A (r, d_in), B (d_out, r))


class ModuleMixer:
    """Combines one module: `add` each kept member once (slot = its position among the kept), then `result`."""

    def __init__(self, n_members: int, rank: int, dtype: torch.dtype = torch.float32):
        self.n_members, self.rank, self.dtype = n_members, rank, dtype  # dtype: the output's storage dtype

    def add(self, slot: int, weight: float, a: torch.Tensor, b: torch.Tensor) -> None:
        raise NotImplementedError

    def result(self) -> Factors:
        raise NotImplementedError


class FactorMixer(ModuleMixer):
    """The published rule: A's and B's averaged separately, as running sums (O(one module) memory)."""

    a_sum: torch.Tensor | None = None
    b_sum: torch.Tensor | None = None

    def add(self, slot: int, weight: float, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.to(torch.float32), b.to(torch.float32)  # sums accumulate in float32
        if self.a_sum is None or self.b_sum is None:
            self.a_sum, self.b_sum = weight * a, weight * b
            return
        _check_shapes((self.a_sum.shape, self.b_sum.shape), (a.shape, b.shape))
        self.a_sum.add_(a, alpha=weight)
        self.b_sum.add_(b, alpha=weight)

    def result(self) -> Factors:
        if self.a_sum is None or self.b_sum is None:
            raise ValueError("no members to combine")
        return self.a_sum, self.b_sum


class DeltaMixer(ModuleMixer):
    """[B_1 ... B_k] @ [c_1 A_1; ...; c_k A_k] = sum_j c_j B_j A_j exactly; each member fills its slot."""

    a_cat: torch.Tensor | None = None
    b_cat: torch.Tensor | None = None
    member_shapes: tuple = ()
    filled = 0

    def add(self, slot: int, weight: float, a: torch.Tensor, b: torch.Tensor) -> None:
        r = a.shape[0]
        if self.a_cat is None or self.b_cat is None:
            # Built directly in the output dtype (every slot gets written): no zero fill, no final copy.
            self.member_shapes = (a.shape, b.shape)
            self.a_cat = torch.empty(self.n_members * r, a.shape[1], dtype=self.dtype)
            self.b_cat = torch.empty(b.shape[0], self.n_members * r, dtype=self.dtype)
        _check_shapes(self.member_shapes, (a.shape, b.shape))
        if a.dtype != self.dtype:
            a = a.to(torch.float32)  # multiply at full precision, round once into the slot
        torch.mul(a, weight, out=self.a_cat[slot * r : (slot + 1) * r])  # c_j folded in
        self.b_cat[:, slot * r : (slot + 1) * r] = b
        self.filled += 1

    def result(self) -> Factors:
        if self.a_cat is None or self.b_cat is None or self.filled != self.n_members:
            raise ValueError(f"{self.filled} of {self.n_members} members were added")
        return self.a_cat, self.b_cat


class SvdMixer(DeltaMixer):
    """The concatenation of `delta`, truncated to `rank` at the end (holds r*k factors until then)."""

    def __init__(self, n_members: int, rank: int, dtype: torch.dtype = torch.float32):
        super().__init__(n_members, rank, torch.float32)  # the concatenation is factorised, not stored

    def result(self) -> Factors:
        return truncated_svd_factors(*super().result(), self.rank)


def truncated_svd_factors(a_cat: torch.Tensor, b_cat: torch.Tensor, rank: int) -> Factors:
    """Best rank-`rank` factors of B_cat A_cat without forming it (float64 inside).

    With B_cat = Q_b R_b and A_cat^T = Q_a R_a, B_cat A_cat = Q_b (R_b R_a^T) Q_a^T, so the SVD of the small
    core U S V^T gives B = Q_b U_k sqrt(S_k), A = sqrt(S_k) V_k^T Q_a^T. Only R is computed by QR; the Q
    products are recovered as Q_b U_k = B_cat R_b^{-1} U_k by a small triangular solve (3x cheaper than
    forming Q), falling back to explicit Q when a factor is (numerically) rank-deficient.
    """
    if rank < 1:
        raise ConfigError("method.svd_rank", rank, "svd mode needs a positive output rank")
    a64, b64 = a_cat.to(torch.float64), b_cat.to(torch.float64)
    r_b = torch.linalg.qr(b64, mode="r").R
    r_a = torch.linalg.qr(a64.T, mode="r").R
    u, singular, vh = torch.linalg.svd(r_b @ r_a.T)
    kept = min(rank, singular.numel())
    root = singular[:kept].sqrt()  # split sqrt(S) evenly so neither factor dwarfs the other
    left, right = u[:, :kept] * root, vh[:kept].T * root
    if _well_conditioned(r_b) and _well_conditioned(r_a):
        b_new = b64 @ torch.linalg.solve_triangular(r_b, left, upper=True)
        a_new = torch.linalg.solve_triangular(r_a, right, upper=True).T @ a64
    else:
        b_new = torch.linalg.qr(b64).Q @ left
        a_new = (torch.linalg.qr(a64.T).Q @ right).T
    if kept < rank:  # a module thinner than the output rank: zero rows/cols keep every module the same r
        a_new = torch.cat([a_new, a_new.new_zeros(rank - kept, a_new.shape[1])], dim=0)
        b_new = torch.cat([b_new, b_new.new_zeros(b_new.shape[0], rank - kept)], dim=1)
    return a_new.to(torch.float32), b_new.to(torch.float32)


def _well_conditioned(r: torch.Tensor) -> bool:
    """Square, full-rank triangular factor (|diag| ratio above 1e-8) that is safe to solve with."""
    diagonal = torch.diagonal(r).abs()
    return (
        r.shape[0] == r.shape[1] and bool(diagonal.max() > 0) and bool(diagonal.min() > 1e-8 * diagonal.max())
    )


def _check_shapes(expected: tuple, got: tuple) -> None:
    """(A shape, B shape) of a member against the first member's."""
    expected, got = tuple(map(tuple, expected)), tuple(map(tuple, got))
    if expected != got:
        raise ValueError(f"factor shapes (A, B) {got} differ from the first member's {expected}")


@dataclass(frozen=True)
class CombineMode:
    mixer: type[ModuleMixer]
    default_top_k: int | None  # None: every member with a nonzero coefficient
    # (member rank, number of kept members, requested rank) -> output rank
    output_rank: Callable[[int, int, int | None], int]


COMBINE_MODES: Registry[CombineMode] = Registry("combine mode", "method.combine")
COMBINE_MODES.add("factors", CombineMode(FactorMixer, None, lambda r, k, rank: r))
COMBINE_MODES.add("delta", CombineMode(DeltaMixer, 8, lambda r, k, rank: r * k))
COMBINE_MODES.add("svd", CombineMode(SvdMixer, 8, lambda r, k, rank: min(r if rank is None else rank, r * k)))
DEFAULT_MODE = "delta"
USE_MODE_DEFAULT = -1  # sentinel for `top_k`: take the mode's default


def select_members(coefficients: np.ndarray, top_k: int | None,
                   renormalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the `top_k` largest positive coefficients (all positive ones if None) and their weights
    renormalised to sum to 1 - dropping small members must not shrink the update.

    `renormalize=False` is for weights that are not a mixture (LoraHub's search: signed, any sum): the `top_k`
    largest in magnitude among the nonzero ones are kept as they are; all zeros (LoraHub's start, when nothing
    beat it) keep the first member with weight 0, a zero update: the base model."""
    coefficients = np.asarray(coefficients, dtype=np.float64)
    if coefficients.ndim != 1:
        raise ValueError(f"coefficients must be one row over the bank, got shape {coefficients.shape}")
    if not np.isfinite(coefficients).all() or (renormalize and (coefficients < 0).any()):
        raise ValueError("coefficients must be finite" + (" and non-negative" if renormalize else ""))
    if top_k is not None and top_k < 1:
        raise ConfigError("method.top_k", top_k, "must be >= 1 or null (all members)")
    nonzero = np.flatnonzero(coefficients != 0)
    if nonzero.size == 0 and renormalize:
        raise ValueError("all coefficients are zero; nothing to combine")
    if nonzero.size == 0:
        return np.arange(1), np.zeros(1)
    order = nonzero[np.argsort(-np.abs(coefficients[nonzero]), kind="stable")]
    kept = order if top_k is None else order[:top_k]
    return kept, (coefficients[kept] / coefficients[kept].sum() if renormalize else coefficients[kept])


def combine_module(
    mode: str,
    weights: Sequence[float] | np.ndarray,
    a_factors: Sequence[torch.Tensor],
    b_factors: Sequence[torch.Tensor],
    rank: int | None = None,
) -> Factors:
    """In-memory combination of one module's factors (what `predict_adapter` does per module)."""
    combiner = COMBINE_MODES.get(mode)
    if not (len(weights) == len(a_factors) == len(b_factors)) or not len(weights):
        raise ValueError("need one weight, one A and one B per member, and at least one member")
    mixer = combiner.mixer(len(weights), combiner.output_rank(a_factors[0].shape[0], len(weights), rank))
    for slot, (weight, a, b) in enumerate(zip(weights, a_factors, b_factors, strict=True)):
        mixer.add(slot, float(weight), a.to(torch.float32), b.to(torch.float32))
    return mixer.result()


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
    seconds: dict[str, float] = field(default_factory=dict)  # "combine" (read + mix) and "write"


def predict_adapter(
    member_dirs: Sequence[str | Path],
    coefficients: np.ndarray,
    out_dir: str | Path,
    mode: str = DEFAULT_MODE,
    top_k: int | None = USE_MODE_DEFAULT,
    rank: int | None = None,
    output_dtype: str | None = None,
    renormalize: bool = True,
) -> Prediction:
    """Combine bank members (aligned with `coefficients`) into a PEFT adapter at `out_dir`.

    `top_k` keeps the largest coefficients (mode default: all for `factors`, 8 otherwise) and renormalises
    them; `rank` is the svd output rank (default: the members' r); `output_dtype` defaults to the members'
    storage dtype; `renormalize=False` writes signed weights as given (`select_members`). Members are streamed one at a time from their memory-mapped files (each file read once,
    front to back) in float32 and folded into the output: RAM holds one member's module plus the output
    (`svd` keeps the rank r*k concatenation until its final per-module truncation).
    """
    combiner = COMBINE_MODES.get(mode)
    if len(member_dirs) != len(coefficients):
        raise ValueError(f"{len(member_dirs)} member dirs but {len(coefficients)} coefficients")
    kept, weights = select_members(
        coefficients, combiner.default_top_k if top_k == USE_MODE_DEFAULT else top_k, renormalize
    )
    config = read_adapter_config(member_dirs[kept[0]])
    new_rank = combiner.output_rank(int(config["r"]), len(kept), rank)
    started = time.perf_counter()
    # Reading, converting and folding members in are memory-bound copies and axpys, and svd's per-module
    # QR/SVD of (d x r*k) matrices is mid-sized: one thread is within a small factor of all cores and immune
    # to the collapse (10-1000x) of OpenMP teams when other processes occupy the cores.
    with torch_threads(1):
        modules: list[str] = []
        mixers: dict[str, ModuleMixer] = {}
        dtype = torch.float32
        for slot, (index, weight) in enumerate(zip(kept, weights, strict=True)):
            reader = AdapterReader(member_dirs[index])
            if slot == 0:
                modules, dtype = reader.modules, resolve_dtype(output_dtype, reader.dtype())
                mixers = {module: combiner.mixer(len(kept), new_rank, dtype) for module in modules}
            elif reader.modules != modules:
                missing = sorted(set(modules) ^ set(reader.modules))[0]
                raise DataError(
                    f"{reader.path}: LoRA module {missing!r} differs from the first member's modules"
                )
            for module in modules:
                try:
                    # stored dtype: a bf16 member copied into a bf16 output never round-trips through float32
                    mixers[module].add(slot, float(weight), *reader.factors(module, as_float32=False))
                except ValueError as error:
                    raise DataError(f"{reader.path}: module {module!r}: {error}") from error
            reader.close()
        tensors: dict[str, torch.Tensor] = {}
        for module in modules:
            a_new, b_new = mixers.pop(module).result()  # pop: free each module's work buffers as we go
            key_a, key_b = factor_keys(module)
            tensors[key_a], tensors[key_b] = a_new.to(dtype), b_new.to(dtype)
    new_alpha = alpha_for_scale(lora_scale(config), new_rank, bool(config.get("use_rslora")))
    config.update(r=new_rank, lora_alpha=_tidy(new_alpha), rank_pattern={}, alpha_pattern={})
    combined = time.perf_counter()
    write_adapter(out_dir, tensors, config)
    seconds = {"combine": combined - started, "write": time.perf_counter() - combined}
    return Prediction(
        Path(out_dir), mode, kept.tolist(), weights.tolist(), new_rank, config["lora_alpha"], config, seconds
    )


def _tidy(alpha: float) -> float | int:
    """Keep integral alphas as ints in the JSON, like PEFT writes them."""
    return int(round(alpha)) if math.isclose(alpha, round(alpha), rel_tol=0, abs_tol=1e-9) else alpha
