import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.meta.bank import load_bank
from lora_lab.meta.combine import combine_module, predict_adapter, select_members
from lora_lab.meta.lora_tensors import lora_scale
from tests.helpers.meta_adapters import MODULES, adapter_config, random_factors, write_member

MODES = ("factors", "delta", "svd")


def delta_weights(adapter_dir) -> dict[str, torch.Tensor]:
    """scale * B @ A per module: what the adapter adds to each base weight."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    scale = lora_scale(config)
    return {
        m: scale * tensors[f"{m}.lora_B.weight"].double() @ tensors[f"{m}.lora_A.weight"].double()
        for m in MODULES
    }


@pytest.mark.parametrize("mode", MODES)
def test_one_hot_reproduces_the_member(make_bank, tmp_path, mode):
    root, tensors = make_bank(4)
    bank = load_bank(root)
    prediction = predict_adapter(
        bank.adapter_dirs, np.array([0, 0, 1.0, 0]), tmp_path / "out", mode=mode, rank=4
    )
    assert prediction.member_indices == [2] and prediction.weights == [1.0]
    written = load_file(str(tmp_path / "out" / "adapter_model.safetensors"))
    config = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (2, 4)  # rank r*1 (svd: min(4, r*1)); scale alpha/r kept
    if mode == "svd":  # a different factorisation of the same update
        expected = delta_weights(bank.adapter_dirs[2])
        for module, update in delta_weights(tmp_path / "out").items():
            torch.testing.assert_close(update, expected[module], rtol=1e-5, atol=1e-5)
    else:
        assert written.keys() == tensors[2].keys()
        for key, tensor in tensors[2].items():
            torch.testing.assert_close(written[key], tensor, rtol=0, atol=0)


def test_delta_is_the_exact_weighted_sum_of_updates(make_bank, tmp_path):
    root, _ = make_bank(4)
    bank = load_bank(root)
    coefficients = np.array([0.1, 0.5, 0.0, 0.4])
    prediction = predict_adapter(bank.adapter_dirs, coefficients, tmp_path / "out", mode="delta", top_k=None)
    assert prediction.member_indices == [1, 3, 0] and prediction.rank == 6
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["lora_alpha"] == 12
    members = [delta_weights(d) for d in bank.adapter_dirs]
    for module, update in delta_weights(tmp_path / "out").items():
        expected = sum(c * members[j][module] for j, c in enumerate(coefficients))
        torch.testing.assert_close(update, expected, rtol=1e-6, atol=1e-6)


def test_top_k_keeps_largest_and_renormalises(make_bank, tmp_path):
    root, _ = make_bank(4)
    bank = load_bank(root)
    coefficients = np.array([0.1, 0.5, 0.15, 0.25])
    prediction = predict_adapter(bank.adapter_dirs, coefficients, tmp_path / "out", mode="delta", top_k=2)
    assert prediction.member_indices == [1, 3]
    np.testing.assert_allclose(prediction.weights, [0.5 / 0.75, 0.25 / 0.75])
    members = [delta_weights(d) for d in bank.adapter_dirs]
    for module, update in delta_weights(tmp_path / "out").items():
        expected = (0.5 * members[1][module] + 0.25 * members[3][module]) / 0.75
        torch.testing.assert_close(update, expected, rtol=1e-6, atol=1e-6)


def test_factors_mode_mixes_across_tasks_and_shrinks():
    generator = torch.Generator().manual_seed(0)
    a_factors = [torch.randn(4, 64, generator=generator) for _ in range(2)]
    b_factors = [torch.randn(64, 4, generator=generator) for _ in range(2)]
    a_new, b_new = combine_module("factors", [0.5, 0.5], a_factors, b_factors)
    mixed = b_new @ a_new
    cross = 0.25 * (b_factors[0] @ a_factors[1] + b_factors[1] @ a_factors[0])
    own = 0.25 * (b_factors[0] @ a_factors[0] + b_factors[1] @ a_factors[1])
    torch.testing.assert_close(mixed, own + cross, rtol=1e-5, atol=1e-4)
    a_exact, b_exact = combine_module("delta", [0.5, 0.5], a_factors, b_factors)
    assert torch.linalg.norm(mixed) < 0.75 * torch.linalg.norm(b_exact @ a_exact)


def test_svd_is_the_best_low_rank_approximation():
    generator = torch.Generator().manual_seed(1)
    a_factors = [torch.randn(3, 20, generator=generator) for _ in range(3)]
    b_factors = [torch.randn(12, 3, generator=generator) for _ in range(3)]
    weights = [0.2, 0.3, 0.5]
    a_full, b_full = combine_module("delta", weights, a_factors, b_factors)
    exact = (b_full @ a_full).double()
    singular = torch.linalg.svdvals(exact)
    a_full_rank, b_full_rank = combine_module("svd", weights, a_factors, b_factors, rank=9)
    torch.testing.assert_close((b_full_rank @ a_full_rank).double(), exact, rtol=1e-4, atol=1e-4)
    a_low, b_low = combine_module("svd", weights, a_factors, b_factors, rank=4)
    assert a_low.shape == (4, 20) and b_low.shape == (12, 4)
    error = torch.linalg.norm((b_low @ a_low).double() - exact)
    assert error == pytest.approx(torch.linalg.norm(singular[4:]).item(), rel=1e-4)  # Eckart-Young
    # a module with d_out = 5 < rank 8 <= r*k = 9 has only 5 singular values: the rest is zero padding
    thin_b = [b[:5] for b in b_factors]
    a_padded, b_padded = combine_module("svd", weights, a_factors, thin_b, rank=8)
    assert a_padded.shape == (8, 20) and b_padded.shape == (5, 8)
    assert torch.count_nonzero(a_padded[5:]) == 0 and torch.count_nonzero(b_padded[:, 5:]) == 0


def test_bf16_members_keep_their_dtype_unless_asked(make_bank, tmp_path):
    root, tensors = make_bank(3, dtype=torch.bfloat16)
    bank = load_bank(root)
    predict_adapter(bank.adapter_dirs, np.array([1.0, 0, 0]), tmp_path / "bf16", mode="delta")
    written = load_file(str(tmp_path / "bf16" / "adapter_model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in written.values())
    assert all(torch.equal(written[k], tensors[0][k]) for k in written)
    predict_adapter(bank.adapter_dirs, np.array([0.5, 0.5, 0]), tmp_path / "f32", output_dtype="float32")
    assert all(
        t.dtype == torch.float32
        for t in load_file(str(tmp_path / "f32" / "adapter_model.safetensors")).values()
    )
    with pytest.raises(ConfigError, match="choices: bfloat16, float16, float32"):
        predict_adapter(bank.adapter_dirs, np.array([1.0, 0, 0]), tmp_path / "x", output_dtype="fp8")


def test_output_loads_in_peft_with_the_expected_update(make_bank, tmp_path):
    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    root, _ = make_bank(3)
    bank = load_bank(root)
    coefficients = np.array([0.2, 0.3, 0.5])
    predict_adapter(bank.adapter_dirs, coefficients, tmp_path / "out", mode="delta")
    config = LlamaConfig(
        vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=4,
    )  # fmt: skip
    model = PeftModel.from_pretrained(LlamaForCausalLM(config), str(tmp_path / "out"))
    q_proj = model.base_model.model.model.layers[1].self_attn.q_proj
    peft_update = q_proj.get_delta_weight("default").double()
    module = "base_model.model.model.layers.1.self_attn.q_proj"
    expected = sum(c * delta_weights(d)[module] for c, d in zip(coefficients, bank.adapter_dirs, strict=True))
    torch.testing.assert_close(peft_update, expected, rtol=1e-5, atol=1e-6)


def test_output_is_replaced_atomically_and_failures_leave_nothing(make_bank, tmp_path):
    root, _ = make_bank(3)
    bank = load_bank(root)
    out = tmp_path / "out"
    predict_adapter(bank.adapter_dirs, np.array([1.0, 0, 0]), out, mode="factors")
    predict_adapter(bank.adapter_dirs, np.array([0, 1.0, 0]), out, mode="factors")  # overwrite
    written = load_file(str(out / "adapter_model.safetensors"))
    original = load_file(str(bank.adapter_dirs[1] / "adapter_model.safetensors"))
    assert all(torch.equal(written[k], original[k]) for k in original)
    broken = dict(random_factors(seed=9))
    broken.pop("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight")
    broken.pop("base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight")
    broken_dir = write_member(tmp_path / "broken", broken, adapter_config())
    with pytest.raises(DataError, match="differs from the first member"):
        predict_adapter([bank.adapter_dirs[0], broken_dir], np.array([0.5, 0.5]), tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank", "broken", "out"]


def test_select_members_and_bad_inputs(make_bank, tmp_path):
    kept, weights = select_members(np.array([0.0, 0.2, 0.6, 0.2]), top_k=None)
    assert kept.tolist() == [2, 1, 3] and weights.sum() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="top_k"):
        select_members(np.array([1.0]), top_k=0)
    with pytest.raises(ValueError, match="all coefficients are zero"):
        select_members(np.zeros(3), top_k=None)
    root, _ = make_bank(2)
    with pytest.raises(ConfigError, match="choices: delta, factors, svd"):
        predict_adapter(load_bank(root).adapter_dirs, np.array([1.0, 0]), tmp_path / "o", mode="average")


@pytest.mark.parametrize("mode", MODES)
def test_members_with_other_shapes_are_rejected(mode):
    a_factors = [torch.zeros(2, 4), torch.zeros(3, 4)]
    b_factors = [torch.zeros(5, 2), torch.zeros(5, 3)]
    with pytest.raises(ValueError, match=r"factor shapes \(A, B\) \(\(3, 4\), \(5, 3\)\) differ"):
        combine_module(mode, [0.5, 0.5], a_factors, b_factors)


def test_svd_handles_rank_deficient_stacks():
    """The same member twice makes B_cat singular: the explicit-Q fallback must still be exact."""
    generator = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 20, generator=generator), torch.randn(12, 3, generator=generator)
    a_new, b_new = combine_module("svd", [0.25, 0.75], [a, a], [b, b], rank=6)
    torch.testing.assert_close(b_new @ a_new, b @ a, rtol=1e-5, atol=1e-5)
    zero_a, zero_b = combine_module("svd", [1.0], [a], [torch.zeros(12, 3)], rank=3)  # untrained B = 0
    assert torch.count_nonzero(zero_b @ zero_a) == 0


def test_factors_is_lorahubs_merge_form_with_signed_free_weights(make_bank, tmp_path):
    """LoraHub composes A = sum w_i A_i and B = sum w_i B_i (weights signed, not normalised): `factors` is that,
    so the update is (sum w_i B_i)(sum w_i A_i), not sum w_i B_i A_i."""
    root, tensors = make_bank(3)
    bank = load_bank(root)
    weights = np.array([0.7, -0.4, 1.2])
    module = next(iter(MODULES))
    a_new, b_new = combine_module("factors", weights, [t[f"{module}.lora_A.weight"] for t in tensors],
                                  [t[f"{module}.lora_B.weight"] for t in tensors])
    b_sum = sum(w * t[f"{module}.lora_B.weight"].double() for w, t in zip(weights, tensors, strict=True))
    a_sum = sum(w * t[f"{module}.lora_A.weight"].double() for w, t in zip(weights, tensors, strict=True))
    torch.testing.assert_close(b_new.double() @ a_new.double(), b_sum @ a_sum, rtol=1e-6, atol=1e-6)
    exact = sum(w * t[f"{module}.lora_B.weight"].double() @ t[f"{module}.lora_A.weight"].double()
                for w, t in zip(weights, tensors, strict=True))
    assert not torch.allclose(b_sum @ a_sum, exact, atol=1e-2)  # the cross terms: a different update

    prediction = predict_adapter(bank.adapter_dirs, weights, tmp_path / "out", mode="factors", renormalize=False)
    assert prediction.member_indices == [2, 0, 1] and prediction.weights == [1.2, 0.7, -0.4]  # by magnitude, as is
    scale = lora_scale(json.loads((bank.adapter_dirs[0] / "adapter_config.json").read_text()))
    written = delta_weights(tmp_path / "out")
    for m in MODULES:
        b_m = sum(w * t[f"{m}.lora_B.weight"].double() for w, t in zip(weights, tensors, strict=True))
        a_m = sum(w * t[f"{m}.lora_A.weight"].double() for w, t in zip(weights, tensors, strict=True))
        torch.testing.assert_close(written[m], scale * b_m @ a_m, rtol=1e-5, atol=1e-5)


def test_signed_weights_need_renormalize_false_and_all_zero_is_the_base_model(make_bank, tmp_path):
    root, _ = make_bank(3)
    bank = load_bank(root)
    with pytest.raises(ValueError, match="non-negative"):
        select_members(np.array([0.5, -0.5, 1.0]), None)
    kept, weights = select_members(np.array([0.5, -0.9, 0.0]), 1, renormalize=False)
    assert kept.tolist() == [1] and weights.tolist() == [-0.9]
    predict_adapter(bank.adapter_dirs, np.zeros(3), tmp_path / "zero", mode="factors", renormalize=False)
    assert all(update.abs().max() == 0 for update in delta_weights(tmp_path / "zero").values())
