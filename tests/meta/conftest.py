"""Fixtures for the meta-generation tests."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.meta_adapters import BASE_MODEL, adapter_config, random_factors, tiny_llama, write_member


@pytest.fixture
def make_bank(tmp_path):
    """make_bank(n, rank=2, dtype=float32, configs={i: overrides}) -> (bank dir, [tensors per member])."""

    def build(n: int = 4, rank: int = 2, dtype: torch.dtype = torch.float32, configs: dict | None = None):
        root = tmp_path / "bank"
        members, all_tensors = [], []
        for i in range(n):
            tensors = {k: v.to(dtype) for k, v in random_factors(seed=i, rank=rank).items()}
            config = adapter_config(rank=rank, alpha=2 * rank, **(configs or {}).get(i, {}))
            write_member(root / "adapters" / f"task{i:03d}", tensors, config)
            members.append(
                {
                    "name": f"task{i:03d}",
                    "adapter": f"adapters/task{i:03d}",
                    "dataset": {"id": i},
                    "source": f"src{i // 2}",
                }
            )
            all_tensors.append(tensors)
        (root / "bank.json").write_text(json.dumps({"base_model": BASE_MODEL, "members": members}))
        return root, all_tensors

    return build


@pytest.fixture
def llama_bank(tmp_path):
    """(model, tokenizer, [member dirs]): three LoRAs with random A and B on q/v of one tiny Llama."""
    from peft import LoraConfig, get_peft_model

    from lora_lab.models.tiny import build_char_tokenizer

    tokenizer = build_char_tokenizer()
    dirs = []
    for seed in range(3):
        base = tiny_llama(len(tokenizer))  # seeds the model's own init: each member's seed comes after it
        torch.manual_seed(100 + seed)
        peft_model = get_peft_model(base, LoraConfig(
            r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.5)
        peft_model.save_pretrained(tmp_path / f"m{seed}")
        dirs.append(tmp_path / f"m{seed}")
    return tiny_llama(len(tokenizer)), tokenizer, dirs
