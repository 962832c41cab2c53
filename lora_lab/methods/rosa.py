"""`method=rosa`: Robust Adaptation (arXiv 2401.04679), ΔW = scale·B·A + S with S sparse on a fixed support.

Schedule (the authors' defaults): the LoRA part trains alone for `mask_warmup_steps` while the squared dense
gradient of each frozen target weight is summed up (`rosa_layers.py`); then each layer's support is fixed at its top
`density` fraction of those scores and S (values starting at zero) trains jointly with B·A. The authors' code is
a peft fork with CUDA kernels; this is pure PyTorch (`rosa_layers.py`, `sparse_linear.py`).

Saved as a standard peft LoRA adapter (loads with `PeftModel.from_pretrained`) plus `rosa_sparse.safetensors`
(`<module>.indices` int64 flat row-major positions, `<module>.values`) and the method record with each module's
shape; `lora_lab.methods.adapters.load_adapter` / `merge_adapter` put both parts back (merge: W += scale·B·A + S).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import choice, positive, ranged
from lora_lab.methods.adapters import ADAPTER_FORMATS, AdapterFormat, read_record, write_record
from lora_lab.methods.lora import LoraMethod, LoraSchema
from lora_lab.methods.registry import METHODS
from lora_lab.methods.rosa_layers import attach, sparse_deltas, target_layers
from lora_lab.methods.sparse_linear import SPARSE_BACKENDS

log = logging.getLogger("lora_lab")

SPARSE_FILE = "rosa_sparse.safetensors"
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class RosaSchema(LoraSchema):
    name: str = "rosa"
    r: int = positive(16)
    alpha: float = 16.0
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    density: float = ranged(0.006, gt=0, le=1)  # fraction of each target weight in S's support
    mask_warmup_steps: int = positive(64)  # LoRA-only steps that accumulate gradient squares before S's support is fixed
    sparse_backend: str = choice("csr", "csr", "dense")


def nnz_for(shape: tuple[int, int], density: float) -> int:
    return max(1, round(density * shape[0] * shape[1]))


def warmup_steps(cfg) -> int:
    """The configured warm-up, shortened to half the run when the run is shorter than twice it (logged)."""
    wanted = int(cfg.method.mask_warmup_steps)
    return max(1, min(wanted, int(cfg.train.max_steps) // 2))


@METHODS.option
class RosaMethod(LoraMethod):
    supports_fsdp = False
    schema = RosaSchema
    adapter_format = "rosa"

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)  # LoRA's own rules first
        if cfg.method.init_lora_weights not in ("default", "gaussian"):
            raise ConfigError("method.init_lora_weights", cfg.method.init_lora_weights,
                              "RoSA needs an init that leaves the base weights untouched",
                              choices=["default", "gaussian"])
        if cfg.method.use_dora:
            raise ConfigError("method.use_dora", True, "RoSA scores its support with the plain LoRA gradient; "
                              "DoRA's weight normalisation would make that score wrong", choices=[False])
        SPARSE_BACKENDS.get(cfg.method.sparse_backend)

    def __init__(self, cfg):
        super().__init__(cfg)
        self.warmup = warmup_steps(cfg)
        self.support_fixed = False
        if self.warmup < cfg.method.mask_warmup_steps:
            log.warning("rosa: mask_warmup_steps=%d does not fit train.max_steps=%d; using %d",
                        cfg.method.mask_warmup_steps, cfg.train.max_steps, self.warmup)

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        model = super().apply(model)
        self._model = model  # state_dict / load_state_dict carry the support of this model's layers
        for _, layer in list(target_layers(model)):
            base = layer.get_base_layer()
            attach(layer, nnz_for((base.out_features, base.in_features), self.mcfg.density),
                   self.mcfg.sparse_backend).start_scoring()
        return model

    # ----- training -----
    def after_optimizer_step(self, model: torch.nn.Module, step: int) -> None:
        if not self.support_fixed and step + 1 >= self.warmup:
            for _, _, delta in sparse_deltas(model):
                delta.choose_support()
            self.support_fixed = True
            log.info("rosa: sparse support fixed after %d steps", step + 1)

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        deltas = [d for _, _, d in sparse_deltas(model)]
        numel = sum(d.shape[0] * d.shape[1] for d in deltas)
        nnz = sum(d.indices.numel() for d in deltas)
        return {"rosa_nnz": nnz, "rosa_density": nnz / max(numel, 1), "rosa_mask_warmup_steps": self.warmup,
                "rosa_support_fixed": int(self.support_fixed)}

    # ----- persistence -----
    def save(self, model: torch.nn.Module, out_dir: Path) -> None:
        # S lives in its own file; peft >= 0.22 picks adapter tensors by tuner layer, not by name, and would also
        # write S into the LoRA file (which plain peft then reports as unexpected keys on load)
        lora_only = {k: v for k, v in model.state_dict().items() if ".rosa_S." not in k}
        model.save_pretrained(str(out_dir), state_dict=lora_only)
        tensors, shapes = {}, {}
        for name, _, delta in sparse_deltas(model):
            shapes[name] = list(delta.shape)
            tensors[f"{name}.indices"] = delta.indices.detach().cpu().contiguous()
            tensors[f"{name}.values"] = delta.values.detach().float().cpu().contiguous()
        save_file(tensors, str(Path(out_dir) / SPARSE_FILE), metadata={"format": "pt"})
        write_record(out_dir, self.record() | {"sparse_file": SPARSE_FILE, "shapes": shapes,
                                               "support_fixed": self.support_fixed})

    def state_dict(self) -> dict[str, Any]:
        """Support, values and (during warm-up) the gradient-square accumulators, per layer."""
        if not hasattr(self, "_model"):
            return {}
        layers = {
            name: {"indices": d.indices.cpu(), "values": d.values.detach().cpu(),
                   "grad_sq": None if d.grad_sq is None else d.grad_sq.cpu()}
            for name, _, d in sparse_deltas(self._model)
        }
        return {"support_fixed": self.support_fixed, "layers": layers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.support_fixed = bool(state["support_fixed"])
        for name, _, delta in sparse_deltas(self._model):
            saved = state["layers"][name]
            if saved["indices"].numel():
                delta.set_support(saved["indices"], saved["values"])
                delta.grad_sq = None
            elif saved["grad_sq"] is not None:
                delta.grad_sq.copy_(saved["grad_sq"])


def _load(base: torch.nn.Module, folder: Path) -> torch.nn.Module:
    from peft import PeftModel

    model = PeftModel.from_pretrained(base, str(folder))
    record = read_record(folder)
    tensors = load_file(str(folder / record["sparse_file"]))
    layers = dict(target_layers(model))
    backend = record["hyperparameters"].get("sparse_backend", "csr")
    for name, shape in record["shapes"].items():
        indices, values = tensors[f"{name}.indices"], tensors[f"{name}.values"]
        layer = layers[name]
        delta = attach(layer, indices.numel() or nnz_for(tuple(shape), record["hyperparameters"]["density"]),
                       backend)
        if indices.numel():
            delta.set_support(indices, values)
        delta.requires_grad_(False)
    return model


def _merge(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """peft merges scale·B·A, then S is added to the merged weight (the forward adds x·Sᵀ after the LoRA layer)."""
    sparse = [(name, delta) for name, _, delta in sparse_deltas(model)]
    merged = model.merge_and_unload()
    for name, delta in sparse:
        delta.merge_into(merged.get_submodule(name).weight)
    return merged


ADAPTER_FORMATS.add("rosa", AdapterFormat(load=_load, merge=_merge))

__all__ = ["RosaMethod", "RosaSchema", "SPARSE_FILE"]
