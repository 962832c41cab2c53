"""RoSA: the sparse kernel is exact, the warm-up scores are the squared dense gradients, and the support has the
configured density and never moves once fixed."""

from __future__ import annotations

import torch

from lora_lab.jobs.steps import count_parameters
from lora_lab.methods.rosa import nnz_for
from lora_lab.methods.rosa_layers import sparse_deltas
from lora_lab.methods.sparse_linear import SparsePattern, sparse_linear
from lora_lab.training.loop import train
from tests.helpers.method_helpers import build, features, logits, method_cfg, one_thread, probe_ids  # noqa: F401  (one_thread: autouse)


def test_csr_and_dense_backends_agree_in_value_and_gradients():
    torch.manual_seed(0)
    shape = (48, 40)
    pattern = SparsePattern.from_indices(torch.randperm(48 * 40)[:97], shape)
    x = torch.randn(3, 5, 40, dtype=torch.float32)
    results = {}
    for backend in ("csr", "dense"):
        xb = x.clone().requires_grad_(True)
        values = torch.linspace(-1, 1, 97).requires_grad_(True)
        y = sparse_linear(xb, values, pattern, backend)
        (y * torch.arange(48.0)).sum().backward()
        results[backend] = (y, xb.grad, values.grad)
    dense_s = pattern.dense(torch.linspace(-1, 1, 97))
    torch.testing.assert_close(results["dense"][0], x @ dense_s.t())
    for got, want in zip(results["csr"], results["dense"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_warmup_scores_are_the_squared_dense_weight_gradient():
    built = build(method_cfg("rosa", "train.max_steps=8", "method.mask_warmup_steps=4"))
    layers = list(sparse_deltas(built.model))
    for _, layer, _ in layers:
        layer.get_base_layer().weight.requires_grad_(True)  # only to get the reference gradient
    ids = probe_ids()
    built.model.train()
    built.model(input_ids=ids, labels=ids).loss.backward()
    for _, layer, delta in layers:
        reference = layer.get_base_layer().weight.grad.square()
        torch.testing.assert_close(delta.grad_sq, reference, rtol=1e-4, atol=1e-10)


def test_support_has_the_configured_density_and_stays_fixed():
    density, warmup, steps = 0.05, 3, 8
    built = build(method_cfg("rosa", f"train.max_steps={steps}", f"method.mask_warmup_steps={warmup}",
                             f"method.density={density}", "method.lr=1e-2"))
    deltas = [d for _, _, d in sparse_deltas(built.model)]
    assert len(deltas) == 2 * 7  # every target layer of both blocks
    params = count_parameters(built.model)
    lora = sum(p.numel() for n, p in built.model.named_parameters() if "lora_" in n)
    assert params["trainable_params"] == lora + sum(d.values.numel() for d in deltas)

    supports: list[list[torch.Tensor]] = []

    def on_step(state, _):
        supports.append([d.indices.clone() for d in deltas])

    train(built.model, features(built), built.method, built.cfg, pad_id=built.tokenizer.pad_token_id,
          device=torch.device("cpu"), on_step=on_step)

    assert all(s.numel() == 0 for s in supports[warmup - 2])  # LoRA alone during the warm-up
    fixed = supports[warmup - 1]
    for delta, indices in zip(deltas, fixed, strict=True):
        assert indices.numel() == nnz_for(delta.shape, density)
        assert indices.unique().numel() == indices.numel()
        assert 0 <= int(indices.min()) and int(indices.max()) < delta.shape[0] * delta.shape[1]
        assert delta.grad_sq is None  # warm-up memory released
        assert delta.values.abs().sum() > 0  # S trained after the warm-up
    for later in supports[warmup:]:
        for a, b in zip(fixed, later, strict=True):
            assert torch.equal(a, b)
    metrics = built.method.extra_metrics(built.model)
    assert abs(metrics["rosa_density"] - density) < 1e-3 and metrics["rosa_support_fixed"] == 1


def test_sparse_part_contributes_to_the_output():
    built = build(method_cfg("rosa", "train.max_steps=2", "method.mask_warmup_steps=1"))
    built.model.train()
    ids = probe_ids()
    built.model(input_ids=ids, labels=ids).loss.backward()
    built.method.after_optimizer_step(built.model, 0)  # fixes the support
    before = logits(built.model)
    for _, _, delta in sparse_deltas(built.model):
        torch.nn.init.normal_(delta.values, std=0.5)
    assert (logits(built.model) - before).abs().max() > 1e-3


def test_short_runs_shorten_the_warmup():
    built = build(method_cfg("rosa", "train.max_steps=10", "method.mask_warmup_steps=64"))
    assert built.method.warmup == 5
