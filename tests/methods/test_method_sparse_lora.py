"""Sparse LoRA: the schedules, reaching the target sparsity, masks that persist into the saved adapter, L1."""

from __future__ import annotations

import pytest
import torch
from method_helpers import build, features, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)
from safetensors.torch import load_file

from lora_lab.methods.pruning import PruneWindow, cubic, magnitude_mask, oneshot
from lora_lab.methods.sparse_lora import lora_factors
from lora_lab.training.loop import train


def test_cubic_schedule_ramps_from_zero_to_the_target():
    window = PruneWindow(start=2, end=10, every=2, target=0.8)
    values = {t: cubic(t, window) for t in range(14)}
    assert values[0] is None and values[1] is None and values[3] is None and values[11] is None
    assert values[2] == 0.0 and values[10] == pytest.approx(0.8)
    ramp = [values[t] for t in (2, 4, 6, 8, 10)]
    assert ramp == sorted(ramp)
    assert ramp[1] - ramp[0] > ramp[4] - ramp[3]  # fast first, slow near the target
    assert [oneshot(t, window) for t in (1, 2, 3)] == [None, 0.8, None]


def test_magnitude_mask_keeps_the_largest_and_never_revives():
    w = torch.tensor([[0.1, -3.0, 0.5], [2.0, -0.2, 0.0]])
    mask = magnitude_mask(w, 0.5)
    assert mask.tolist() == [[False, True, True], [True, False, False]]
    w2 = torch.tensor([[9.0, -3.0, 0.5], [2.0, -0.2, 0.0]])  # a pruned entry grew back
    assert not magnitude_mask(w2, 0.5, keep=mask)[0, 0]


def test_reaches_target_sparsity_and_saves_zeros(tmp_path):
    target, steps = 0.7, 12
    built = build(method_cfg("sparse_lora", f"train.max_steps={steps}", f"method.target_sparsity={target}",
                             "method.start_step=2", "method.end_step=8", "method.lr=1e-2"))
    seen = []

    def on_step(state, _):
        seen.append(built.method.extra_metrics(built.model)["lora_sparsity"])

    train(built.model, features(built), built.method, built.cfg, pad_id=built.tokenizer.pad_token_id,
          device=torch.device("cpu"), on_step=on_step)
    assert seen[1] == 0.0 and seen == sorted(seen)
    for name, p in lora_factors(built.model):
        assert (p == 0).float().mean().item() == pytest.approx(target, abs=1.0 / p.numel()), name
    assert built.method.extra_metrics(built.model)["lora_sparsity"] == pytest.approx(target, abs=0.01)

    built.method.save(built.model, tmp_path)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    factors = [t for k, t in saved.items() if "lora_A" in k or "lora_B" in k]
    assert factors and all((t == 0).float().mean().item() == pytest.approx(target, abs=0.05) for t in factors)


def test_l1_penalty_is_the_weighted_sum_of_absolute_factors():
    built = build(method_cfg("sparse_lora", "method.l1_lambda=0.01"))
    expected = 0.01 * sum(p.abs().sum() for _, p in lora_factors(built.model))
    torch.testing.assert_close(built.method.extra_loss(built.model), expected)
    assert build(method_cfg("sparse_lora")).method.extra_loss(built.model) is None
