"""`method=galore`: full-parameter training whose optimizer state lives in a low-rank gradient subspace (GaLore).

Every weight trains. The 2-D weights of the `target_modules` layers go to galore-torch's param group (`rank`,
`update_proj_gap`, `scale`, `proj_type`): their gradient G (m×n) is projected to r×n (or m×r) on an SVD basis
refreshed every `update_proj_gap` steps, Adam's two moments live there, and the update is projected back and
scaled. Everything else (norms, embeddings, head, 1-D weights) is a normal AdamW group. `optimizer=auto` takes
GaLoreAdamW8bit on CUDA (bitsandbytes' 8-bit states; it needs CUDA) and GaLoreAdamW elsewhere.

The "adapter" of a full fine-tune is the weight change: `adapter_model.safetensors` holds W_trained − W0 for
every trained parameter (in its dtype) and `adapter_config.json` records method, format and hyper-parameters;
loading adds the deltas to a base model, which is also the merge. W0 is kept as a CPU copy from `apply` on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import choice, positive, ranged
from lora_lab.methods.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from lora_lab.methods.adapters import ADAPTER_FORMATS, AdapterFormat, write_record
from lora_lab.methods.base import Method
from lora_lab.methods.registry import METHODS
from lora_lab.utils.device import wants_cuda

FORMAT = "full_weight_delta"


@dataclass
class GaloreSchema:
    name: str = "galore"
    rank: int = positive(128)
    update_proj_gap: int = positive(200)  # steps between SVD refreshes of the projection
    scale: float = ranged(0.25, gt=0)  # multiplies the projected-back update
    proj_type: str = choice("std", "std", "reverse_std", "right", "left", "full")
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    optimizer: str = choice("auto", "auto", "adamw", "adamw8bit")
    freeze_embeddings: bool = False  # keep input (and tied output) embeddings fixed
    lr: float | None = ranged(1e-4, gt=0)  # overrides train.lr: GaLore trains full weights, so lower than LoRA's


def _adamw(groups: list[dict], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    from galore_torch import GaLoreAdamW

    return GaLoreAdamW(groups, lr=lr, weight_decay=weight_decay, no_deprecation_warning=True)


def _adamw8bit(groups: list[dict], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    from galore_torch import GaLoreAdamW8bit

    return GaLoreAdamW8bit(groups, lr=lr, weight_decay=weight_decay)


OPTIMIZERS: dict[str, Callable[[list[dict], float, float], torch.optim.Optimizer]] = {
    "adamw": _adamw, "adamw8bit": _adamw8bit,
}


def uses_cuda(cfg) -> bool:
    return wants_cuda(cfg.hardware.device)


def optimizer_name(cfg) -> str:
    chosen = str(cfg.method.optimizer)
    return ("adamw8bit" if uses_cuda(cfg) else "adamw") if chosen == "auto" else chosen


def name_matches(module_name: str, patterns: list[str]) -> bool:
    """peft's rule for a list of names: the module name equals a pattern or ends with `.pattern`."""
    return any(re.fullmatch(rf"(.*\.)?{re.escape(p)}", module_name) for p in patterns)


def projected_parameters(model: torch.nn.Module, patterns: list[str]) -> list[torch.nn.Parameter]:
    return [
        module.weight for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and name_matches(name, patterns)
        and module.weight.ndim == 2 and module.weight.requires_grad
    ]


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer keeps per parameter (moments, projection bases)."""
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            tensors = [value] if torch.is_tensor(value) else _projector_tensors(value)
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def _projector_tensors(value: Any) -> list[torch.Tensor]:
    matrix = getattr(value, "ortho_matrix", None)
    if matrix is None:
        return []
    return [matrix] if torch.is_tensor(matrix) else list(matrix)


@METHODS.option
class GaloreMethod(Method):
    schema = GaloreSchema
    adapter_format = FORMAT

    @classmethod
    def check(cls, cfg) -> None:
        if optimizer_name(cfg) == "adamw8bit" and not uses_cuda(cfg):
            raise ConfigError("method.optimizer", "adamw8bit", "GaLoreAdamW8bit needs a CUDA device",
                              choices=["auto", "adamw"])

    @classmethod
    def replaced_keys(cls, cfg) -> dict[str, str]:
        """GaLore builds its own projected optimizer (`build_optimizer`): `method.optimizer`, not `train.optimizer`."""
        return {**super().replaced_keys(cfg),
                "train.optimizer": f"method=galore reads method.optimizer={cfg.method.optimizer} instead"}

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        model.requires_grad_(True)
        if self.mcfg.freeze_embeddings:
            model.get_input_embeddings().requires_grad_(False)
        self.initial = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
        self._model = model
        return model

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        patterns = list(OmegaConf.to_container(self.mcfg.target_modules))
        projected = projected_parameters(model, patterns)
        if not projected:
            raise ConfigError("method.target_modules", patterns, "matches no 2-D Linear weight in this model")
        ids = {id(p) for p in projected}
        regular = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        groups = [
            {"params": regular},
            {"params": projected, "rank": int(self.mcfg.rank), "update_proj_gap": int(self.mcfg.update_proj_gap),
             "scale": float(self.mcfg.scale), "proj_type": str(self.mcfg.proj_type)},
        ]
        self.optimizer = OPTIMIZERS[optimizer_name(self.cfg)](
            groups, self.learning_rate(), float(self.cfg.train.weight_decay)
        )
        self.projected_numel = sum(p.numel() for p in projected)
        return self.optimizer

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        if not hasattr(self, "optimizer"):
            return {}
        return {"galore_projected_params": self.projected_numel,
                "optimizer_state_mb": optimizer_state_bytes(self.optimizer) / 2**20}

    def record(self) -> dict[str, Any]:
        return super().record() | {"optimizer": optimizer_name(self.cfg), "weights": ADAPTER_WEIGHTS,
                                   "parameters": sorted(self.initial)}

    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        params = dict(model.named_parameters())
        deltas = {
            name: (params[name].detach().cpu().float() - start.float()).to(start.dtype).contiguous()
            for name, start in self.initial.items()
        }
        save_file(deltas, str(Path(out_dir) / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        record = self.record()
        write_record(out_dir, record)
        (Path(out_dir) / ADAPTER_CONFIG).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n",
                                                    encoding="utf-8")


@torch.no_grad()
def add_deltas(base: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """W0 + (W_trained − W0) for every saved parameter: loading a full-weight delta is merging it."""
    deltas = load_file(str(Path(folder) / ADAPTER_WEIGHTS))
    params = dict(base.named_parameters())
    missing = sorted(set(deltas) - set(params))
    if missing:
        raise KeyError(f"{folder}: deltas for parameters this model lacks: {missing[:5]}")
    for name, delta in deltas.items():
        param = params[name]
        param.copy_((param.float() + delta.to(param.device).float()).to(param.dtype))
    return base


ADAPTER_FORMATS.add(FORMAT, AdapterFormat(load=add_deltas, merge=lambda model, folder: model))
