"""RoSA's per-layer parts: the sparse delta S beside each peft LoRA layer, and the probe that picks its support.

Each targeted peft `LoraLayer` gets a child `rosa_S` (a `SparseDelta`) and a forward hook that adds x · Sᵀ to the
layer output, so peft's own LoRA forward, saving and merging stay untouched: ΔW = scale · B·A + S.

During the mask-selection warm-up the same hook wraps the output in `_GradProbe`, an identity whose backward
computes the dense gradient of the *frozen* base weight, dL/dW0 = grad_outᵀ · x, and adds its square to the
layer's score. W0 never becomes a parameter, so trainable-parameter counts, gradient clipping and the optimizer
never see it; only target layers pay: one float32 score per weight, freed once the support is fixed, plus the
gradient of one layer at a time. Scores add up per backward pass: with `train.grad_accum=1` that is the mean
square of each step's gradient; with accumulation it is the per-micro-batch (empirical Fisher) sum.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from lora_lab.methods.sparse_linear import SparsePattern, sparse_linear

CHILD = "rosa_S"
PEFT_PREFIX = "base_model.model."


class _GradProbe(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output: torch.Tensor, x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.scores = scores
        return output.view_as(output)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        g = grad_out.reshape(-1, grad_out.shape[-1]).to(torch.float32)
        grad_w = g.t() @ x.reshape(-1, x.shape[-1]).to(torch.float32)
        ctx.scores.add_(grad_w.square_())
        return grad_out, None, None


class SparseDelta(nn.Module):
    """S for one layer: trained `values` (nnz,) at fixed flat row-major `indices` (empty until chosen)."""

    def __init__(self, shape: tuple[int, int], nnz: int, device: torch.device, backend: str = "csr"):
        super().__init__()
        self.shape = (int(shape[0]), int(shape[1]))
        self.backend = backend
        self.values = nn.Parameter(torch.zeros(nnz, dtype=torch.float32, device=device))
        self.register_buffer("indices", torch.empty(0, dtype=torch.long, device=device))
        self._pattern: SparsePattern | None = None
        self.grad_sq: torch.Tensor | None = None  # warm-up only: sum of (dL/dW0)² over backward passes

    @property
    def ready(self) -> bool:
        return self.indices.numel() > 0

    @property
    def pattern(self) -> SparsePattern:
        if self._pattern is None or self._pattern.indices.device != self.indices.device:
            self._pattern = SparsePattern.from_indices(self.indices, self.shape)
        return self._pattern

    def set_support(self, indices: torch.Tensor, values: torch.Tensor | None = None) -> None:
        indices = indices.to(self.values.device, torch.long)
        order = torch.argsort(indices)
        if indices.numel() != self.values.numel():
            raise ValueError(f"support has {indices.numel()} entries, values {self.values.numel()}")
        self.indices = indices[order]
        with torch.no_grad():
            self.values.copy_(values.to(self.values)[order] if values is not None else torch.zeros_like(self.values))
        self._pattern = None

    # ----- warm-up: score every weight by its squared dense gradient -----
    def start_scoring(self) -> None:
        self.grad_sq = torch.zeros(self.shape, dtype=torch.float32, device=self.values.device)

    def choose_support(self) -> None:
        """Fix S's support at the largest accumulated gradient squares; the values start at zero (ΔW unchanged)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.grad_sq)  # every replica must pick the same support
        scores = self.grad_sq.flatten()
        self.set_support(torch.topk(scores, self.values.numel(), sorted=False).indices)
        self.grad_sq = None

    # ----- forward -----
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sparse_linear(x, self.values, self.pattern, self.backend)

    def add_to_output(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        if self.ready:
            return output + self(x).to(output.dtype)
        if self.grad_sq is not None and torch.is_grad_enabled() and output.requires_grad:
            output = _GradProbe.apply(output, x, self.grad_sq)
            # `values` join the graph with a zero contribution (zero grads, no Adam update), so DDP, which
            # expects every trainable parameter to get a gradient each step, also works during the warm-up.
            output = output + 0.0 * self.values.sum()
        return output

    @torch.no_grad()
    def merge_into(self, weight: torch.Tensor) -> None:
        if self.ready:
            weight.view(-1).index_add_(0, self.indices, self.values.to(weight.dtype))


def _hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return getattr(module, CHILD).add_to_output(args[0], output)


def target_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """peft LoRA layers over a dense nn.Linear, named as in the base model (without peft's prefix)."""
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and isinstance(module.get_base_layer(), nn.Linear):
            yield name.removeprefix(PEFT_PREFIX), module


def attach(layer: nn.Module, nnz: int, backend: str) -> SparseDelta:
    base = layer.get_base_layer()
    delta = SparseDelta((base.out_features, base.in_features), nnz, base.weight.device, backend)
    layer.add_module(CHILD, delta)
    layer.register_forward_hook(_hook)
    return delta


def sparse_deltas(model: nn.Module) -> Iterator[tuple[str, nn.Module, SparseDelta]]:
    for name, layer in target_layers(model):
        if hasattr(layer, CHILD):
            yield name, layer, getattr(layer, CHILD)
