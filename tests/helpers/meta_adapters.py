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


def tiny_llama(vocab: int):
    """A seeded 2-layer Llama (hidden 16) to hook a bank onto."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)
    return LlamaForCausalLM(config).eval()


def fewshot_features(tokenizer) -> list:
    """Three labelled arithmetic examples as training features (prompt tokens unlabelled)."""
    from lora_lab.training.tokenize import Features

    features = []
    for prompt, answer in (("1+1=", "2"), ("2+2=", "4"), ("3+1=", "4")):
        p, a = tokenizer(prompt)["input_ids"], tokenizer(answer)["input_ids"]
        features.append(Features(p + a, [-100] * len(p) + a))
    return features
