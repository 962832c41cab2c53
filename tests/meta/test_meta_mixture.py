"""A row-mixed bank scores many coefficient vectors in one batch exactly as separate combined adapters would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PeftModel

from lora_lab.evaluation.generation import generate_batched
from lora_lab.meta.combine import predict_adapter
from lora_lab.meta.fewshot import answer_losses, search_coefficients
from lora_lab.meta.mixture import BankMixture
from tests.helpers.meta_adapters import fewshot_features

ROWS = np.array([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 0.0]])


@pytest.fixture
def bank(llama_bank):
    return llama_bank


def combined(model, dirs, row, out):
    """The same mixture the slow way: predict a delta adapter, load it with peft."""
    predict_adapter(dirs, row, out, mode="delta", top_k=None)
    return PeftModel.from_pretrained(model, str(out)).eval()


@torch.no_grad()
def test_each_row_equals_its_combined_adapter(bank, tmp_path):
    model, tokenizer, dirs = bank
    ids = torch.tensor([tokenizer("what is 2+2?")["input_ids"]] * len(ROWS))
    base = model(input_ids=ids).logits
    mixture = BankMixture(model, dirs)
    mixture.set_rows(ROWS)
    mixed = model(input_ids=ids).logits
    mixture.close()
    assert torch.equal(model(input_ids=ids).logits, base)  # close() leaves the base model untouched
    assert torch.allclose(mixed[3], base[3], atol=1e-6)  # the zero row is the base model
    for i, row in enumerate(ROWS[:3]):
        peft_model = combined(model, dirs, row, tmp_path / f"c{i}")
        expected = peft_model(input_ids=ids[:1]).logits[0]
        peft_model.unload()
        assert not torch.allclose(expected, base[0], atol=1e-3)  # the adapters do change the output
        assert torch.allclose(mixed[i], expected, atol=1e-5)


def test_batched_generation_maps_rows_to_their_settings(bank, tmp_path):
    """Prompts are reordered longest-first inside generate_batched: `before_batch` keeps each row's mixture."""
    model, tokenizer, dirs = bank
    prompts = [tokenizer(t)["input_ids"] for t in ("a", "bcdefgh", "ij k")]
    settings = ROWS[:3]
    mixture = BankMixture(model, dirs)
    mixed = generate_batched(
        model, tokenizer, prompts * len(settings), max_new_tokens=6, batch_size=4,
        before_batch=lambda index: mixture.set_rows(settings[[i // len(prompts) for i in index]]))
    mixture.close()
    for s, row in enumerate(settings):
        peft_model = combined(model, dirs, row, tmp_path / f"g{s}")
        expected = generate_batched(peft_model, tokenizer, prompts, max_new_tokens=6, batch_size=4)
        peft_model.unload()
        assert mixed[s * len(prompts):(s + 1) * len(prompts)] == expected


def test_row_shape_and_member_rank_are_checked(bank, tmp_path):
    model, _, dirs = bank
    mixture = BankMixture(model, dirs)
    with pytest.raises(ValueError, match=r"\(rows, 3\)"):
        mixture.set_rows(np.ones((2, 2)))
    mixture.close()


@torch.no_grad()
def test_answer_losses_match_the_combined_adapter(bank, tmp_path):
    model, tokenizer, dirs = bank
    features = fewshot_features(tokenizer)
    mixture = BankMixture(model, dirs)
    losses = answer_losses(model, mixture, features, ROWS[:2], tokenizer.pad_token_id)
    mixture.close()
    for i, row in enumerate(ROWS[:2]):
        peft_model = combined(model, dirs, row, tmp_path / f"l{i}")
        per_example = []
        for f in features:
            out = peft_model(input_ids=torch.tensor([f.input_ids]), labels=torch.tensor([f.labels]))
            per_example.append(out.loss.item())
        peft_model.unload()
        assert losses[i] == pytest.approx(np.mean(per_example), rel=1e-4)


def test_search_improves_on_its_start_and_stays_in_the_allowed_members(bank):
    pytest.importorskip("nevergrad")
    model, tokenizer, dirs = bank
    mixture = BankMixture(model, dirs)
    allowed = np.array([True, True, False])
    found = search_coefficients(model, mixture, fewshot_features(tokenizer), np.array([0.5, 0.5, 0.9]), allowed,
                                tokenizer.pad_token_id, budget=24, batch=8)
    mixture.close()
    assert found.best_loss <= found.start_loss
    assert found.coefficients[2] == 0 and found.coefficients.sum() == pytest.approx(1.0)
    assert found.evaluations == 24
