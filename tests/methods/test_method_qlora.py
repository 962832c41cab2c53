"""QLoRA: the base is really 4-bit NF4 with double quantisation, only LoRA trains, and gradients survive an
evaluation pass run before training (bitsandbytes' CPU inference repacking is kept off)."""

from __future__ import annotations

import bitsandbytes as bnb
import torch

from lora_lab.jobs.steps import count_parameters
from lora_lab.methods import METHODS
from tests.helpers.method_helpers import base_model, build, method_cfg, one_thread, probe_ids  # noqa: F401  (one_thread: autouse)


def test_base_weights_are_nf4_double_quantised():
    built = build(method_cfg("qlora"))
    four_bit = [m for m in built.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7  # every decoder Linear; the lm_head stays in float
    for module in four_bit:
        assert module.weight.quant_type == "nf4"
        assert module.weight.quant_state.nested  # double quantisation
        assert module.compute_dtype == torch.float32  # hardware.precision
        assert not module.weight.requires_grad
    trainable = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    metrics = count_parameters(built.model) | built.method.extra_metrics(built.model)
    float_total = sum(p.numel() for p in base_model(method_cfg("lora")).parameters())
    assert metrics["total_params"] == float_total + metrics["trainable_params"]


def test_lora_gradients_survive_an_eval_pass_before_training():
    cfg = method_cfg("qlora", "method.init_lora_weights=gaussian")
    method = METHODS.get("qlora")(cfg)
    model = base_model(cfg, method)
    with torch.no_grad():  # the recipe's "before" evaluation
        model(input_ids=probe_ids())
    model = method.apply(model)
    model.train()
    ids = probe_ids()
    model(input_ids=ids, labels=ids).loss.backward()
    first_layer = [p.grad for n, p in model.named_parameters() if "layers.0." in n and "lora_B" in n]
    assert first_layer and all(g is not None and g.abs().sum() > 0 for g in first_layer)
