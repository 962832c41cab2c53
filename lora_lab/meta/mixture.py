"""Every bank member's LoRA beside the base model at once, mixed per batch row: many coefficient vectors scored
in one forward pass.

A combined adapter in `delta` mode is W0 + s * sum_j c_j B_j A_j (s = alpha/r, shared by the members). Forward
hooks on the target linears add exactly that, with a different coefficient row c for each row of the batch:
for input x (rows, tokens, d_in), delta = s * ((x A^T) * c_r) B^T, where A (N r, d_in) and B (d_out, N r) are
the members' factors stacked and c_r repeats each member's coefficient r times. A study that scores 20
settings on 50 examples runs one batch of 1000 rows instead of 20 adapters one after another; the extra cost
per token is 2 N r (d_in + d_out) multiply-adds per target, small beside the base layer for N r <= 1024.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lora_lab.config.errors import DataError
from lora_lab.meta.lora_tensors import AdapterReader, lora_scale, read_adapter_config

PEFT_PREFIX = "base_model.model."


class BankMixture:
    """Hooks the bank's stacked factors onto `model` (a plain transformers model, no peft wrapper).

    Use `set_rows(C)` with C (rows, members) before each forward: row i of the batch is the model with the
    adapter sum_j C[i, j] B_j A_j. `close()` removes the hooks and leaves the model as it was."""

    def __init__(self, model: torch.nn.Module, member_dirs: Sequence[str | Path], dtype: torch.dtype | None = None):
        configs = [read_adapter_config(d) for d in member_dirs]
        scales = {round(lora_scale(c), 9) for c in configs}
        ranks = {int(c["r"]) for c in configs}
        if len(scales) != 1 or len(ranks) != 1:
            raise DataError(f"bank members differ in rank {sorted(ranks)} or scale {sorted(scales)}; "
                            "a row-mixed bank needs one rank and one alpha/r")
        self.scale, self.rank, self.members = scales.pop(), ranks.pop(), len(member_dirs)
        readers = [AdapterReader(d) for d in member_dirs]
        modules = readers[0].modules
        for reader in readers[1:]:
            if reader.modules != modules:
                raise DataError(f"{reader.path}: LoRA modules differ from {readers[0].path}'s")
        named = dict(model.named_modules())
        device = next(model.parameters()).device
        dtype = dtype or next(model.parameters()).dtype
        self._rows: torch.Tensor | None = None
        self._handles = []
        for module in modules:
            path = module[len(PEFT_PREFIX):] if module.startswith(PEFT_PREFIX) else module
            layer = named.get(path)
            if layer is None:
                raise DataError(f"{readers[0].path}: module {path!r} is not in the model")
            factors = [r.factors(module) for r in readers]
            a = torch.cat([f[0] for f in factors]).to(device=device, dtype=dtype)  # (N r, d_in)
            b = torch.cat([f[1] for f in factors], dim=1).to(device=device, dtype=dtype)  # (d_out, N r)
            self._handles.append(layer.register_forward_hook(self._hook(a, b)))
        for reader in readers:
            reader.close()
        self._device, self._dtype = device, dtype

    def _hook(self, a: torch.Tensor, b: torch.Tensor):
        def add_mixture(_module, inputs, output):
            if self._rows is None:
                return output
            x = inputs[0]
            rows = self._rows.view(x.shape[0], *([1] * (x.dim() - 2)), -1)
            return output + ((x.to(a.dtype) @ a.T) * rows) @ b.T * self.scale
        return add_mixture

    def set_rows(self, coefficients: np.ndarray | torch.Tensor | None) -> None:
        """One coefficient row per batch row (shape (rows, members)); None scores the base model."""
        if coefficients is None:
            self._rows = None
            return
        rows = torch.as_tensor(np.asarray(coefficients, dtype=np.float32))
        if rows.dim() != 2 or rows.shape[1] != self.members:
            raise ValueError(f"coefficients must be (rows, {self.members}), got {tuple(rows.shape)}")
        self._rows = rows.repeat_interleave(self.rank, dim=1).to(device=self._device, dtype=self._dtype)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._rows = [], None
