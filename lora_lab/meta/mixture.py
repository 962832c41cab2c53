"""Every bank member's LoRA beside the base model at once, mixed per batch row: many coefficient vectors scored
in one forward pass.

A combined adapter in `delta` mode is W0 + s * sum_j c_j B_j A_j (s = alpha/r, shared by the members). Forward
hooks on the target linears add exactly that, with a different coefficient row c for each row of the batch:
for input x (rows, tokens, d_in), delta = s * ((x A^T) * c_r) B^T, where A (N r, d_in) and B (d_out, N r) are
the members' factors stacked and c_r repeats each member's coefficient r times. A study that scores 20
settings on 50 examples runs one batch of 1000 rows instead of 20 adapters one after another; the extra cost
per token is 2 N r (d_in + d_out) multiply-adds per target, small beside the base layer for N r <= 1024.

Each row also names its *form*, how its coefficients act (`MIXTURE_FORMS`): `delta` (the exact mixture above,
`method.combine=delta`), `factors` (LoraHub's and the paper's published composition, (sum c_j B_j)(sum c_j A_j),
`method.combine=factors`) or `arrow` (Arrow's per-token routing, `arrow.py`; the row's nonzero entries are the
members it may route to). One batch can hold rows of every form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lora_lab.config.errors import DataError
from lora_lab.meta.arrow import DEFAULT_TEMPERATURE, DEFAULT_TOP_K, arrow_gates, arrow_prototypes
from lora_lab.meta.lora_tensors import AdapterReader, lora_scale, read_adapter_config
from lora_lab.registry import Registry

PEFT_PREFIX = "base_model.model."


@dataclass
class LayerBank:
    """One hooked linear's stacked factors: A (N r, d_in), B (d_out, N r); Arrow's prototypes once needed."""

    a: torch.Tensor
    b: torch.Tensor
    members: int
    prototypes: torch.Tensor | None = None


@dataclass
class RowInputs:
    """What a form sees for its batch rows: z = x A^T (rows, ..., N r), the rows' coefficients repeated per rank
    (rows, 1.., N r) and per member (rows, N), the layer input x and the layer."""

    z: torch.Tensor
    per_rank: torch.Tensor
    per_member: torch.Tensor
    x: torch.Tensor
    layer: LayerBank
    mixture: BankMixture


# A form maps its rows' inputs to u (rows, ..., N r); the layer adds scale * u B^T.
MixtureForm = Callable[[RowInputs], torch.Tensor]
MIXTURE_FORMS: Registry[MixtureForm] = Registry("mixture form", "mixture form")


@MIXTURE_FORMS.register("delta")
def delta_form(rows: RowInputs) -> torch.Tensor:
    """sum_j c_j B_j A_j x: each member's own update, weighted."""
    return rows.z * rows.per_rank


@MIXTURE_FORMS.register("factors")
def factors_form(rows: RowInputs) -> torch.Tensor:
    """(sum_j c_j B_j)(sum_k c_k A_k) x: the mixed A applied first, then every member's B, weighted."""
    members = rows.layer.members
    mixed = (rows.z * rows.per_rank).unflatten(-1, (members, -1)).sum(-2)  # (sum_k c_k A_k) x: (rows, ..., r)
    return mixed.repeat(*([1] * (mixed.dim() - 1)), members) * rows.per_rank


@MIXTURE_FORMS.register("arrow")
def arrow_form(rows: RowInputs) -> torch.Tensor:
    """Arrow: per token, the top-k allowed members by |<x, prototype>|, softmax-gated (`arrow.py`)."""
    layer, mixture = rows.layer, rows.mixture
    if layer.prototypes is None:
        layer.prototypes = arrow_prototypes(layer.a, layer.b, layer.members)
    gates = arrow_gates(rows.x, layer.prototypes, rows.per_member != 0, mixture.arrow_top_k,
                        mixture.arrow_temperature)
    return rows.z * gates.repeat_interleave(layer.a.shape[0] // layer.members, dim=-1)


class BankMixture:
    """Hooks the bank's stacked factors onto `model` (a plain transformers model, no peft wrapper).

    Use `set_rows(C, forms)` with C (rows, members) before each forward: row i of the batch is the model with
    the adapter sum_j C[i, j] B_j A_j (or the row's form of it); a single row applies to every batch row.
    `close()` removes the hooks and leaves the model as it was."""

    def __init__(self, model: torch.nn.Module, member_dirs: Sequence[str | Path], dtype: torch.dtype | None = None,
                 arrow_top_k: int = DEFAULT_TOP_K, arrow_temperature: float = DEFAULT_TEMPERATURE):
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
        self.arrow_top_k, self.arrow_temperature = arrow_top_k, arrow_temperature
        self._rows: torch.Tensor | None = None  # (rows, N r): each member's coefficient repeated r times
        self._members: torch.Tensor | None = None  # (rows, N)
        self._groups: list[tuple[str, torch.Tensor | None]] = []  # (form, its batch rows; None = all rows)
        self._handles = []
        for module in modules:
            path = module[len(PEFT_PREFIX):] if module.startswith(PEFT_PREFIX) else module
            layer = named.get(path)
            if layer is None:
                raise DataError(f"{readers[0].path}: module {path!r} is not in the model")
            factors = [r.factors(module) for r in readers]
            a = torch.cat([f[0] for f in factors]).to(device=device, dtype=dtype)  # (N r, d_in)
            b = torch.cat([f[1] for f in factors], dim=1).to(device=device, dtype=dtype)  # (d_out, N r)
            self._handles.append(layer.register_forward_hook(self._hook(LayerBank(a, b, self.members))))
        for reader in readers:
            reader.close()
        self._device, self._dtype = device, dtype

    def _hook(self, layer: LayerBank):
        def add_mixture(_module, inputs, output):
            if self._rows is None:
                return output
            x = inputs[0].to(layer.a.dtype)
            shape = (x.shape[0], *([1] * (x.dim() - 2)), -1)
            per_rank = self._rows.expand(x.shape[0], -1) if len(self._rows) == 1 else self._rows
            per_member = self._members.expand(x.shape[0], -1) if len(self._members) == 1 else self._members
            z = x @ layer.a.T
            if len(self._groups) == 1:  # one form for the whole batch: no gathering
                u = MIXTURE_FORMS.get(self._groups[0][0])(
                    RowInputs(z, per_rank.reshape(shape), per_member, x, layer, self))
            else:
                u = torch.empty_like(z)
                for form, index in self._groups:
                    u[index] = MIXTURE_FORMS.get(form)(RowInputs(
                        z[index], per_rank[index].reshape(len(index), *shape[1:]), per_member[index], x[index],
                        layer, self))
            return output + (u @ layer.b.T) * self.scale
        return add_mixture

    def set_rows(self, coefficients: np.ndarray | torch.Tensor | None,
                 forms: str | Sequence[str] = "delta") -> None:
        """One coefficient row per batch row (shape (rows, members)), or one row for every batch row, and the
        form of each row (one name for all, or one per row; `MIXTURE_FORMS`); None scores the base model."""
        if coefficients is None:
            self._rows = self._members = None
            self._groups = []
            return
        rows = torch.as_tensor(np.asarray(coefficients, dtype=np.float32))
        if rows.dim() != 2 or rows.shape[1] != self.members:
            raise ValueError(f"coefficients must be (rows, {self.members}), got {tuple(rows.shape)}")
        names = [forms] * len(rows) if isinstance(forms, str) else list(forms)
        if len(names) != len(rows):
            raise ValueError(f"{len(names)} forms for {len(rows)} coefficient rows")
        for name in set(names):
            MIXTURE_FORMS.get(name)
        if len(set(names)) == 1:
            self._groups = [(names[0], None)]
        else:
            self._groups = [(name, torch.tensor([i for i, n in enumerate(names) if n == name], device=self._device))
                            for name in sorted(set(names))]
        self._members = rows.to(device=self._device, dtype=self._dtype)
        self._rows = rows.repeat_interleave(self.rank, dim=1).to(device=self._device, dtype=self._dtype)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._rows, self._members, self._groups = [], None, None, []
