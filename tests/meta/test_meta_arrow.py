"""Arrow routing: per-module prototypes from each member's update, per-token top-k gates, PEFT's router as reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PeftModel

from lora_lab.meta.arrow import arrow_gates, arrow_prototypes
from lora_lab.meta.mixture import BankMixture


def test_each_prototype_is_the_top_right_singular_vector_of_the_members_update():
    generator = torch.Generator().manual_seed(0)
    members, rank, d_in, d_out = 4, 3, 10, 12
    a = torch.randn(members * rank, d_in, generator=generator)
    b = torch.randn(d_out, members * rank, generator=generator)
    prototypes = arrow_prototypes(a, b, members)
    assert prototypes.shape == (members, d_in)
    for j in range(members):
        update = b[:, j * rank:(j + 1) * rank].double() @ a[j * rank:(j + 1) * rank].double()
        top = torch.linalg.svd(update).Vh[0]
        assert abs(float(prototypes[j].double() @ top)) == pytest.approx(1.0, abs=1e-6)  # the same up to sign


def test_gates_keep_the_top_k_allowed_members_per_token_and_sum_to_one():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 6, generator=generator)  # (rows, tokens, d_in)
    prototypes = torch.nn.functional.normalize(torch.randn(4, 6, generator=generator), dim=-1)
    allowed = torch.tensor([[True, True, True, True], [False, True, False, True]])
    gates = arrow_gates(x, prototypes, allowed, top_k=2)
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 5))
    assert ((gates > 0).sum(-1) <= 2).all() and (gates[1][:, [0, 2]] == 0).all()
    scores = (x[0] @ prototypes.T).abs()
    assert torch.equal(gates[0].argmax(-1), scores.argmax(-1))  # the best-aligned member weighs most
    assert arrow_gates(x, prototypes, torch.tensor([[False, False, True, False]] * 2))[..., 2].eq(1).all()


@torch.no_grad()
def test_with_one_member_allowed_arrow_is_that_members_lora(llama_bank):
    model, tokenizer, dirs = llama_bank
    ids = torch.tensor([tokenizer("route me")["input_ids"]])
    mixture = BankMixture(model, dirs)
    mixture.set_rows(np.array([[0.0, 1.0, 0.0]]), "arrow")
    routed = model(input_ids=ids).logits
    mixture.close()
    member = PeftModel.from_pretrained(model, str(dirs[1])).eval()
    expected = member(input_ids=ids).logits
    member.unload()
    torch.testing.assert_close(routed, expected, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_arrow_over_the_whole_bank_matches_peft_arrow_model(llama_bank):
    """PEFT's `create_arrow_model` on the same plain LoRAs (its prototypes by power iteration, ours exact)."""
    from peft import ArrowConfig, create_arrow_model

    model, tokenizer, dirs = llama_bank
    ids = torch.tensor([tokenizer("what is 2+2?")["input_ids"], tokenizer("and 3+5 then")["input_ids"][:12]])
    mixture = BankMixture(model, dirs, arrow_top_k=2)
    mixture.set_rows(np.ones((1, 3)), "arrow")  # one row for every batch row
    routed = model(input_ids=ids).logits
    mixture.close()
    base_logits = model(input_ids=ids).logits
    peft_model = create_arrow_model(model, [str(d) for d in dirs], ArrowConfig(top_k=2, rng_seed=0)).eval()
    expected = peft_model(input_ids=ids).logits
    assert not torch.allclose(expected, base_logits, atol=1e-3)  # the routed LoRAs do change the output
    torch.testing.assert_close(routed, expected, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_rows_of_different_forms_share_one_batch(llama_bank):
    model, tokenizer, dirs = llama_bank
    ids = torch.tensor([tokenizer("mixed forms")["input_ids"]] * 3)
    rows = np.array([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [1.0, 0.0, 1.0]])
    forms = ["delta", "factors", "arrow"]
    mixture = BankMixture(model, dirs)
    mixture.set_rows(rows, forms)
    together = model(input_ids=ids).logits
    for i, form in enumerate(forms):
        mixture.set_rows(rows[i:i + 1], form)
        torch.testing.assert_close(together[i], model(input_ids=ids[:1]).logits[0], rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="mixture form"):
        mixture.set_rows(rows, "soup")
    mixture.close()
