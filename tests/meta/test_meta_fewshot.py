"""The labelled-example versions: LoraHub's search (factor form, free weights, L1) and its best-single control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PeftModel

from lora_lab.meta.combine import predict_adapter
from lora_lab.meta.fewshot import (
    FEWSHOT_RULES,
    FewshotOptions,
    answer_losses,
    fewshot_coefficients,
    search_coefficients,
)
from lora_lab.meta.mixture import BankMixture
from tests.helpers.meta_adapters import fewshot_features

nevergrad = pytest.importorskip("nevergrad")


@torch.no_grad()
def test_a_factors_row_scores_lorahubs_composition(llama_bank, tmp_path):
    """A `factors` row in the batch is the adapter `combine=factors` writes, signed weights included, and one batch
    can mix forms."""
    model, tokenizer, dirs = llama_bank
    ids = torch.tensor([tokenizer("what is 2+2?")["input_ids"]] * 2)
    weights = np.array([[0.9, -0.6, 0.4], [0.9, -0.6, 0.4]])
    mixture = BankMixture(model, dirs)
    mixture.set_rows(weights, ["factors", "delta"])
    mixed = model(input_ids=ids).logits
    mixture.close()
    for row, mode in enumerate(("factors", "delta")):
        predict_adapter(dirs, weights[row], tmp_path / mode, mode=mode, top_k=None, renormalize=False)
        peft_model = PeftModel.from_pretrained(model, str(tmp_path / mode)).eval()
        expected = peft_model(input_ids=ids[:1]).logits[0]
        peft_model.unload()
        assert torch.allclose(mixed[row], expected, atol=1e-5), mode
    assert not torch.allclose(mixed[0], mixed[1], atol=1e-3)  # the two forms differ


def test_best_single_picks_the_member_with_the_least_few_shot_loss(llama_bank):
    model, tokenizer, dirs = llama_bank
    features = fewshot_features(tokenizer)
    mixture = BankMixture(model, dirs)
    alone = answer_losses(model, mixture, features, np.eye(3), tokenizer.pad_token_id)
    prior = np.array([0.1, 0.2, 0.7])
    found = fewshot_coefficients("best_single", model, mixture, features, prior, np.ones(3, bool),
                                 tokenizer.pad_token_id, FewshotOptions(batch=2))  # chunks of 2 members
    best = int(np.argmin(alone))
    np.testing.assert_array_equal(found.coefficients, np.eye(3)[best])
    assert found.best_loss == pytest.approx(alone[best], rel=1e-5) and found.evaluations == 3
    assert found.start_loss == pytest.approx(alone[2], rel=1e-5)  # the prior's own pick
    allowed = np.ones(3, bool)
    allowed[best] = False  # the best one is the target itself: the next best wins
    second = fewshot_coefficients("best_single", model, mixture, features, prior, allowed, tokenizer.pad_token_id)
    mixture.close()
    assert int(np.argmax(second.coefficients)) == int(np.argsort(alone)[1])


def test_lorahub_searches_free_signed_weights_from_zero(llama_bank):
    model, tokenizer, dirs = llama_bank
    features = fewshot_features(tokenizer)
    mixture = BankMixture(model, dirs)
    base_loss = answer_losses(model, mixture, features, np.zeros((1, 3)), tokenizer.pad_token_id)[0]
    found = fewshot_coefficients("lorahub", model, mixture, features, np.array([0.2, 0.3, 0.5]), np.ones(3, bool),
                                 tokenizer.pad_token_id, FewshotOptions(budget=48, batch=8, l1=0.0, form="factors"))
    mixture.close()
    assert found.start_loss == pytest.approx(base_loss, rel=1e-5)  # zero weights: the base model
    assert not found.mixture and np.abs(found.coefficients).max() <= 1.5
    assert found.best_loss < found.start_loss


@pytest.mark.parametrize("version", ["lorahub", "lorahub_prior", "fewshot"])
def test_the_l1_penalty_shrinks_the_weights_towards_its_anchor(llama_bank, version):
    """LoraHub's penalty l1 * mean |w| (lorahub) or mean |w - prior| (lorahub_prior, fewshot): a strong one keeps
    the search at its anchor, none lets it move away."""
    model, tokenizer, dirs = llama_bank
    features = fewshot_features(tokenizer)
    mixture = BankMixture(model, dirs)
    prior = np.full(3, 0.1)
    prior[np.argmax(answer_losses(model, mixture, features, np.eye(3), tokenizer.pad_token_id))] = 0.8  # a bad prior
    anchor = np.zeros(3) if version == "lorahub" else prior
    runs = {l1: fewshot_coefficients(version, model, mixture, features, prior, np.ones(3, bool),
                                     tokenizer.pad_token_id, FewshotOptions(budget=32, batch=8, l1=l1, seed=3))
            for l1 in (0.0, 100.0)}
    mixture.close()
    moved = {l1: np.abs(run.coefficients - anchor).sum() for l1, run in runs.items()}
    assert moved[0.0] > 1e-3 and moved[100.0] < moved[0.0]
    assert moved[100.0] < 1e-9 and runs[100.0].penalty < 1e-9  # nothing beat the anchor by more than its cost
    assert runs[0.0].penalty == 0.0


def test_the_default_search_is_unchanged_by_the_new_options(llama_bank):
    """`fewshot` with no penalty is the search as it was: the same call, the same result."""
    model, tokenizer, dirs = llama_bank
    features = fewshot_features(tokenizer)
    mixture = BankMixture(model, dirs)
    start, allowed = np.array([0.5, 0.5, 0.9]), np.array([True, True, False])
    old = search_coefficients(model, mixture, features, start, allowed, tokenizer.pad_token_id, budget=24, batch=8)
    new = fewshot_coefficients("fewshot", model, mixture, features, start, allowed, tokenizer.pad_token_id,
                               FewshotOptions(budget=24, batch=8))
    mixture.close()
    np.testing.assert_array_equal(old.coefficients, new.coefficients)
    assert old.best_loss == new.best_loss and new.mixture and new.coefficients[2] == 0
    assert set(FEWSHOT_RULES.names()) == {"fewshot", "lorahub", "lorahub_prior", "best_single"}


def test_the_schema_lists_every_registered_version():
    from lora_lab.meta.coefficients import COEFFICIENT_RULES
    from lora_lab.methods.meta import FEWSHOT_VERSIONS, LABEL_FREE_VERSIONS

    assert set(LABEL_FREE_VERSIONS) == set(COEFFICIENT_RULES.names())
    assert set(FEWSHOT_VERSIONS) == set(FEWSHOT_RULES.names())
