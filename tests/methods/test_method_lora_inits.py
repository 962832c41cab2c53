"""LoRA's one-line init switches: inits that rewrite the base weights still save an adapter for an untouched base."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel

from tests.helpers.method_helpers import base_model, build, fit, logits, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)


@pytest.mark.parametrize("init", ["pissa", "olora", "orthogonal", "gaussian"])
def test_trained_adapter_loads_on_the_original_base(init, tmp_path):
    built = build(method_cfg("lora", "train.max_steps=3", "method.lr=1e-2", f"method.init_lora_weights={init}"))
    fit(built)
    expected = logits(built.model)
    built.method.save(built.model, tmp_path)
    reloaded = PeftModel.from_pretrained(base_model(built.cfg), str(tmp_path))
    torch.testing.assert_close(logits(reloaded), expected, rtol=1e-4, atol=1e-4)
