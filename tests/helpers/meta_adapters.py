"""Tiny on-disk PEFT adapters for the meta-generation tests (helpers; fixtures are in conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

MODULES = {  # module -> (d_in, d_out): a 2-layer model with q (8->8) and v (8->4)
    f"base_model.model.model.layers.{layer}.self_attn.{proj}": dims
    for layer in range(2)
    for proj, dims in (("q_proj", (8, 8)), ("v_proj", (8, 4)))
}
BASE_MODEL = "tiny/base"


def adapter_config(rank: int = 2, alpha: float = 4, **overrides) -> dict:
    config = {
        "base_model_name_or_path": BASE_MODEL,
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": alpha,
        "target_modules": ["q_proj", "v_proj"],
        "lora_dropout": 0.0,
        "bias": "none",
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    config.update(overrides)
    return config


def random_factors(seed: int, rank: int = 2, modules: dict = MODULES) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module, (d_in, d_out) in modules.items():
        tensors[f"{module}.lora_A.weight"] = torch.randn(rank, d_in, generator=generator)
        tensors[f"{module}.lora_B.weight"] = torch.randn(d_out, rank, generator=generator)
    return tensors


def write_member(directory: Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return directory
