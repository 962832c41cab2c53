"""Sparse LoRA: the schedules, the pruning rules (per-tensor magnitude, global top-k, rank components, input/output
units) and their structure, masks that persist into the saved adapter, L1 as a proximal step with exact zeros."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from lora_lab.config.errors import ConfigError
from lora_lab.methods.pruning import RULES, PruneWindow, cubic, magnitude_mask, oneshot
from lora_lab.methods.sparse_lora import SparseLoraSchema, lora_factors
from lora_lab.training.loop import train
from tests.helpers.method_helpers import build, features, fit, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)


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


def pairs(factors) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(A, B) of every LoRA module: A is r×d_in, B is d_out×r."""
    named = dict(factors)
    return [(w, named[n.replace(".lora_A.", ".lora_B.")]) for n, w in factors if ".lora_A." in n]


def zero_lines(w: torch.Tensor, dim: int) -> set[int]:
    """Indices of the rows (dim=1) or columns (dim=0) of `w` that are entirely zero."""
    return set(torch.nonzero((w == 0).all(dim=dim)).flatten().tolist())


def check_rank_components(a, b, sparsity):
    gone = zero_lines(a, dim=1)  # rows of A
    assert gone == zero_lines(b, dim=0) and len(gone) == round(sparsity * a.shape[0])  # ... = columns of B
    assert (a != 0).sum() == (a.shape[0] - len(gone)) * a.shape[1]  # nothing else is zero


def check_units(a, b, sparsity):
    inputs, outputs = zero_lines(a, dim=0), zero_lines(b, dim=1)  # columns of A, rows of B
    assert len(inputs) == round(sparsity * a.shape[1]) and len(outputs) == round(sparsity * b.shape[0])
    assert (a != 0).sum() == a.shape[0] * (a.shape[1] - len(inputs))
    assert (b != 0).sum() == (b.shape[0] - len(outputs)) * b.shape[1]


def check_per_tensor(a, b, sparsity):
    for w in (a, b):
        assert (w == 0).sum() == round(sparsity * w.numel())


def check_pooled(factors, sparsity):
    for kind in ("lora_A", "lora_B"):  # A and B are pooled apart, each to the exact sparsity
        pool = torch.cat([w.flatten() for n, w in factors if f".{kind}." in n])
        assert (pool == 0).sum() == round(sparsity * pool.numel())


STRUCTURE = {
    "magnitude": lambda factors, s: [check_per_tensor(a, b, s) for a, b in pairs(factors)],
    "global_topk": check_pooled,
    "rank": lambda factors, s: [check_rank_components(a, b, s) for a, b in pairs(factors)],
    "units": lambda factors, s: [check_units(a, b, s) for a, b in pairs(factors)],
}


def synthetic_factors(seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Two modules, r=4: q (A 4×6, B 8×4) and a 10× larger v (A 4×6, B 6×4)."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"q": ((4, 6), (8, 4), 1.0), "v": ((4, 6), (6, 4), 10.0)}
    return [(f"m.{mod}.lora_{k}.default.weight", torch.randn(shape, generator=g) * scale)
            for mod, (a, b, scale) in shapes.items() for k, shape in (("A", a), ("B", b))]


def test_every_rule_is_registered_and_a_choice_of_the_config():
    assert RULES.names() == sorted(STRUCTURE)
    field = {f.name: f for f in dataclasses.fields(SparseLoraSchema)}["pruning"]
    assert set(field.metadata["choices"]) == set(RULES.names())


@pytest.mark.parametrize("rule", sorted(STRUCTURE))
def test_rule_masks_have_their_structure_and_only_shrink(rule):
    factors = synthetic_factors()
    masks = RULES.get(rule)(factors, 0.5, {})
    pruned = [(n, w * masks[n]) for n, w in factors]
    STRUCTURE[rule](pruned, 0.5)
    # the weights change and the target rises: every entry pruned before stays pruned
    later = RULES.get(rule)([(n, w.flip(-1)) for n, w in synthetic_factors(seed=1)], 0.75, masks)
    assert all(not (later[n] & ~masks[n]).any() for n in masks)
    STRUCTURE[rule]([(n, w * later[n]) for n, w in factors], 0.75)


def test_global_topk_prunes_the_smaller_module_first_per_tensor_does_not():
    factors = synthetic_factors()  # v's factors are 10x q's
    a_q, a_v = "m.q.lora_A.default.weight", "m.v.lora_A.default.weight"
    topk = RULES.get("global_topk")(factors, 0.5, {})
    assert topk[a_v].float().mean() > 0.9 and topk[a_q].float().mean() < 0.1
    per_tensor = RULES.get("magnitude")(factors, 0.5, {})
    assert per_tensor[a_v].float().mean() == per_tensor[a_q].float().mean() == 0.5


@pytest.mark.parametrize("rule", sorted(STRUCTURE))
def test_training_with_each_rule_keeps_its_structure(rule, tmp_path):
    target = 0.5
    built = build(method_cfg("sparse_lora", "train.max_steps=8", f"method.target_sparsity={target}",
                             f"method.pruning={rule}", "method.schedule=oneshot", "method.start_step=3",
                             "method.lr=1e-2"))
    fit(built)
    factors = [(n, p.detach()) for n, p in lora_factors(built.model)]
    STRUCTURE[rule](factors, target)
    assert built.method.extra_metrics(built.model)["lora_sparsity"] == pytest.approx(target, abs=1e-6)
    built.method.save(built.model, tmp_path)  # the zeros (and so the structure) are what is saved
    saved = sorted(load_file(str(tmp_path / "adapter_model.safetensors")).items())
    STRUCTURE[rule](saved, target)


def test_a_bad_rule_is_one_config_error_with_the_choices():
    with pytest.raises(ConfigError) as err:
        method_cfg("sparse_lora", "method.pruning=rows")
    assert str(err.value) == ("method.pruning='rows': not an allowed value "
                              "(choices: global_topk, magnitude, rank, units)")


def l1_run(l1_lambda: float):
    built = build(method_cfg("sparse_lora", "train.max_steps=6", "method.target_sparsity=0",
                             f"method.l1_lambda={l1_lambda}", "method.lr=1e-2"))
    return built, fit(built)


def test_l1_is_a_proximal_step_with_exact_zeros_kept_out_of_the_train_loss():
    plain, plain_result = l1_run(0.0)
    l1, l1_result = l1_run(2.0)
    zeros = sum(int((p == 0).sum()) for _, p in lora_factors(l1.model))
    total = sum(p.numel() for _, p in lora_factors(l1.model))
    assert sum(int((p == 0).sum()) for _, p in lora_factors(plain.model)) == 0
    assert zeros > 0.2 * total  # soft-thresholding sets entries to exactly zero; a loss penalty would not
    metrics = l1.method.extra_metrics(l1.model)
    assert metrics["lora_sparsity"] == pytest.approx(zeros / total)
    # the first step's loss comes from the same weights: equal, because the penalty is not part of it ...
    assert l1_result.losses[0] == pytest.approx(plain_result.losses[0], rel=1e-6)
    # ... and the penalty is reported on its own, for the trained factors
    expected = 2.0 * sum(float(p.detach().abs().sum()) for _, p in lora_factors(l1.model))
    assert metrics["l1_penalty"] == pytest.approx(expected, rel=1e-6)
    assert "l1_penalty" not in plain.method.extra_metrics(plain.model)


def test_the_soft_threshold_uses_the_step_learning_rate():
    built = build(method_cfg("sparse_lora", "train.max_steps=4", "method.target_sparsity=0",
                             "method.l1_lambda=0.5", "method.lr=1e-2"))
    optimizer = built.method.build_optimizer(built.model)
    before = {n: p.detach().clone() for n, p in lora_factors(built.model)}
    built.method.after_backward(built.model, 0)  # no optimizer step in between: the prox step alone
    built.method.after_optimizer_step(built.model, 0)
    threshold = optimizer.param_groups[0]["lr"] * 0.5
    for name, p in lora_factors(built.model):
        w = before[name]
        torch.testing.assert_close(p.detach(), torch.sign(w) * (w.abs() - threshold).clamp(min=0))
