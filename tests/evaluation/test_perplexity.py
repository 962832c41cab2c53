"""Perplexity: the sliding window scores every token once, and equals a plain forward when it fits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lora_lab.config.validate import validate_config
from lora_lab.evaluation.perplexity_mode import evaluate_perplexity, stream_ids
from lora_lab.evaluation.sliding_window import token_nll, windows
from lora_lab.models import load_model_and_tokenizer
from lora_lab.tasks import TASKS
from lora_lab.tasks.base import Example
from tests.helpers.task_cases import task_cfg

TEXT = " = Title = \n\n The first paragraph of an article , with some words .\n = = Section = = \n More text here ."
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny():
    cfg = validate_config(task_cfg("wikitext2"))
    model, tokenizer = load_model_and_tokenizer(cfg)
    return model.eval(), tokenizer, cfg


def plain_nll(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    return F.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none").double()


@pytest.mark.parametrize(("n", "context", "stride"), [(10, 4, 2), (10, 4, 3), (11, 5, 1), (3, 8, 4), (100, 16, 15)])
def test_windows_score_each_token_once(n, context, stride):
    scored = [t for w in windows(n, context, stride) for t in range(w.first_scored, w.end)]
    assert scored == list(range(1, n))
    for w in windows(n, context, stride):
        assert w.length <= context and w.first_scored > w.begin
        assert w.first_scored - w.begin >= min(context - stride, w.first_scored)  # enough history


def test_stride_must_be_below_context():
    with pytest.raises(ValueError, match="stride < context"):
        windows(10, 4, 4)


def test_whole_text_in_one_window_equals_a_plain_forward(tiny):
    model, tokenizer, cfg = tiny
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    nll = token_nll(model, ids, context=len(ids) + 5, stride=len(ids), batch_size=4, device=CPU)
    assert torch.allclose(nll, plain_nll(model, ids), atol=1e-4)
    example = Example(prompt="", target=TEXT, language_modeling=True)
    one_window = validate_config(task_cfg("wikitext2", f"task.context={len(ids) + 1}", f"task.stride={len(ids)}"))
    metrics = evaluate_perplexity(model, tokenizer, TASKS.get("wikitext2")(one_window.task), [example],
                                  one_window, CPU).metrics
    expected = plain_nll(model, ids).mean().item()
    assert metrics["eval_tokens"] == len(ids) - 1
    assert metrics["mean_nll"] == pytest.approx(expected, abs=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)


def test_strided_windows_equal_direct_per_token_computation(tiny):
    model, tokenizer, _ = tiny
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    context, stride = 24, 10
    nll = token_nll(model, ids, context=context, stride=stride, batch_size=3, device=CPU)
    assert not torch.isnan(nll).any()
    for w in windows(len(ids), context, stride):
        direct = plain_nll(model, ids[w.begin:w.end])  # the window alone, unbatched
        offset = w.first_scored - w.begin
        assert torch.allclose(nll[w.first_scored - 1:w.end - 1], direct[offset - 1:], atol=1e-4)


def test_documents_are_charged_their_own_tokens(tiny):
    model, tokenizer, cfg = tiny
    docs = [Example(prompt="", target=t, language_modeling=True) for t in ["first doc", "second, longer document"]]
    ids, owner = stream_ids(tokenizer, docs)
    assert len(ids) == len("first doc\n") + len("second, longer document")  # the char tokenizer: one id per char
    assert owner.count(0) == len("first doc\n")
    result = evaluate_perplexity(model, tokenizer, TASKS.get("wikitext2")(cfg.task), docs, cfg, CPU)
    assert [r["tokens"] for r in result.records] == [len("first doc\n") - 1, len("second, longer document")]
    assert result.metrics["eval_documents"] == 2
