"""HiRA: identity at step 0, and peft's merged update equals the paper's ΔW = W0 ⊙ (B·A) computed by hand."""

from __future__ import annotations

import torch
from peft.tuners.hira.layer import HiraLayer

from tests.helpers.method_helpers import base_model, build, logits, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)


def hira_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, HiraLayer)]


def test_starts_as_the_base_model():
    built = build(method_cfg("hira"))
    layers = hira_layers(built.model)
    assert len(layers) == 2 * 5  # q, k, v, up, down in both blocks
    for _, layer in layers:
        assert torch.count_nonzero(layer.hira_B["default"]) == 0 and layer.hira_A["default"].abs().sum() > 0
    torch.testing.assert_close(logits(built.model), logits(base_model(built.cfg)), rtol=0, atol=0)


def test_merged_update_is_w0_hadamard_ba():
    built = build(method_cfg("hira", "method.r=4"))
    torch.manual_seed(0)
    expected, originals = {}, {}
    for name, layer in hira_layers(built.model):
        torch.nn.init.normal_(layer.hira_B["default"], std=0.1)
        w0 = layer.get_base_layer().weight.detach().clone()
        b, a = layer.hira_B["default"].detach(), layer.hira_A["default"].detach()
        assert b.shape == (w0.shape[0], 4) and a.shape == (4, w0.shape[1])
        name = name.removeprefix("base_model.model.")
        originals[name], expected[name] = w0, w0 * (b @ a)

    # the forward pass applies the same update: y = x·W0ᵀ + x·(W0 ⊙ BA)ᵀ
    _, layer = hira_layers(built.model)[0]
    x = torch.randn(3, layer.in_features)
    w0 = layer.get_base_layer().weight
    with torch.no_grad():
        torch.testing.assert_close(layer(x), x @ (w0 + w0 * (layer.hira_B["default"] @ layer.hira_A["default"])).t(),
                                   rtol=1e-5, atol=1e-5)

    unmerged = logits(built.model)
    merged = built.model.merge_and_unload()
    for name, delta in expected.items():
        got = merged.get_submodule(name).weight - originals[name]
        torch.testing.assert_close(got, delta, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits(merged), unmerged, rtol=1e-4, atol=1e-4)
