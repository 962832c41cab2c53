"""Every method on the tiny model: it learns, it changes the outputs, and save → load → merge round-trips.

Tolerances: a reloaded (unmerged) adapter reproduces the trained model's logits to 1e-5; a merged model to 1e-4
(float32: x·(W + ΔW) and x·W + x·ΔW differ by reassociation only).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer

from lora_lab.jobs.steps import count_parameters
from lora_lab.methods.adapters import RECORD_FILE, load_adapter, merge_adapter
from tests.helpers.method_helpers import (  # noqa: F401  (one_thread: autouse)
    ALL_METHODS,
    LEARNS,
    base_model,
    build,
    fit,
    logits,
    method_cfg,
    one_thread,
)

PLAIN_PEFT = {"lora", "qlora", "sparse_lora", "hira"}  # adapters that load with PeftModel alone, exactly
STEPS = 24


@pytest.fixture(scope="module", params=ALL_METHODS)
def trained(request):
    name = request.param
    built = build(method_cfg(name, f"train.max_steps={STEPS}", *LEARNS[name]))
    base_logits = logits(base_model(built.cfg, built.method))
    params = count_parameters(built.model) | built.method.extra_metrics(built.model)
    result = fit(built)
    return built, result, base_logits, params


def test_loss_falls(trained):
    _, result, _, _ = trained
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert len(result.losses) == STEPS
    assert last < 0.7 * first, result.losses


def test_adapter_changes_outputs(trained):
    built, _, base_logits, _ = trained
    assert (logits(built.model) - base_logits).abs().max() > 1e-2


def test_trainable_parameter_count(trained):
    built, _, _, params = trained
    trainable = params["trainable_params"]
    if built.cfg.method.name == "galore":
        assert trainable == params["total_params"]  # full-parameter training
    else:
        assert 0 < trainable < 0.6 * params["total_params"]


def test_save_load_merge_round_trip(trained, tmp_path):
    built, _, _, _ = trained
    name = built.cfg.method.name
    expected = logits(built.model)
    built.method.save(built.model, tmp_path)

    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["method"] == name and record["hyperparameters"]["name"] == name
    assert (tmp_path / "adapter_config.json").is_file() and (tmp_path / "adapter_model.safetensors").is_file()

    if name in PLAIN_PEFT:
        plain = PeftModel.from_pretrained(base_model(built.cfg, built.method), str(tmp_path))
        torch.testing.assert_close(logits(plain), expected, rtol=1e-5, atol=1e-5)

    with warnings.catch_warnings(record=True) as caught:  # peft names saved tensors it did not expect (or missed)
        warnings.simplefilter("always")
        loaded = load_adapter(base_model(built.cfg, built.method), tmp_path)
    assert not [str(w.message) for w in caught if "adapter keys" in str(w.message)]
    torch.testing.assert_close(logits(loaded), expected, rtol=1e-5, atol=1e-5)

    merged = merge_adapter(loaded, tmp_path)
    assert not isinstance(merged, PeftModel)
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
    assert not any("4bit" in type(m).__name__ for m in merged.modules())
    torch.testing.assert_close(logits(merged), expected, rtol=1e-4, atol=1e-4)
