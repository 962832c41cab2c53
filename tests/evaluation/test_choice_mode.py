"""Choice mode: label log-likelihoods equal a direct computation, and the argmax label is predicted."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

from lora_lab.config.validate import validate_config
from lora_lab.evaluation.choice_mode import evaluate_choice, label_loglikelihoods
from lora_lab.evaluation.loglik import continuation_logprobs
from lora_lab.models import load_model_and_tokenizer
from lora_lab.tasks.base import Example, Task
from lora_lab.tasks.sst2 import Sst2Task
from lora_lab.training.tokenize import prompt_ids, render_prompt
from tests.helpers.task_cases import task_cfg


@pytest.fixture(scope="module")
def tiny():
    cfg = validate_config(task_cfg("sst2", "eval.batch_size=3"))
    model, tokenizer = load_model_and_tokenizer(cfg)
    return model.eval(), tokenizer, cfg


def direct_logprob(model, context: list[int], continuation: list[int]) -> float:
    """One unpadded forward over context + continuation."""
    ids = torch.tensor([context + continuation])
    with torch.no_grad():
        logp = F.log_softmax(model(ids).logits[0].float(), -1)
    return sum(float(logp[len(context) + j - 1, tok]) for j, tok in enumerate(continuation))


def test_batched_scores_equal_direct_computation(tiny):
    model, tokenizer, _ = tiny
    pairs = [(tokenizer(c)["input_ids"], tokenizer(x, add_special_tokens=False)["input_ids"]) for c, x in [
        ("A long context sentence that needs no padding at all.", " yes"),
        ("Short", " a much longer continuation"),
        ("Mid-sized context", "n"),
        ("x", " positive"),
        ("Another context, batched with the others", " negative"),
        ("Short", " b"),  # contexts shared by several continuations of different lengths
        ("Short", " yes please"),
        ("x", " positive!"),
    ]]
    batched = continuation_logprobs(model, pairs, pad_id=tokenizer.pad_token_id, batch_size=2, device=torch.device("cpu"))
    for (context, continuation), value in zip(pairs, batched, strict=True):
        assert value == pytest.approx(direct_logprob(model, context, continuation), abs=1e-4)


def test_label_scores_include_eos_as_trained(tiny):
    model, tokenizer, cfg = tiny
    ex = Example(prompt="Is it good? a fine film", target="positive", choices=["negative", "positive"], label=1)
    scores = label_loglikelihoods(model, tokenizer, [ex], cfg, torch.device("cpu"), "test", cfg.task)[0]
    context = prompt_ids(tokenizer, render_prompt(tokenizer, ex, False))
    for choice, score in zip(ex.choices, scores, strict=True):
        continuation = tokenizer(choice, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert score == pytest.approx(direct_logprob(model, context, continuation), abs=1e-4)


class FavoursToken(torch.nn.Module):
    """A fake causal LM that always puts most probability on one token: the answer is known in advance."""

    def __init__(self, vocab: int, favourite: int):
        super().__init__()
        self.vocab, self.favourite = vocab, favourite
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, logits_to_keep=0, **_):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.favourite] = 5.0
        return CausalLMOutputWithPast(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits,
                                      past_key_values=DynamicCache())


@pytest.mark.parametrize("favourite_word", ["negative", "positive"])
def test_the_most_likely_label_is_predicted(tiny, favourite_word):
    _, tokenizer, cfg = tiny
    task: Task = Sst2Task(cfg.task)
    first_char = tokenizer(favourite_word[0], add_special_tokens=False)["input_ids"][0]
    model = FavoursToken(len(tokenizer), first_char)
    examples = [task.example("a fine film", 1, "x"), task.example("dull", 0, "x")]
    result = evaluate_choice(model, tokenizer, task, examples, cfg, torch.device("cpu"))
    assert [r["prediction"] for r in result.records] == [favourite_word] * 2
    assert result.metrics["accuracy"] == 0.5
    assert result.records[0]["choice_scores"][favourite_word] > result.records[0]["choice_scores"][
        "positive" if favourite_word == "negative" else "negative"]


def test_argmax_of_direct_scores_is_the_prediction(tiny):
    model, tokenizer, cfg = tiny
    task = Sst2Task(cfg.task)
    examples = [task.example(t, i % 2, "x") for i, t in enumerate(["good", "bad movie", "an utter mess", "wow"])]
    result = evaluate_choice(model, tokenizer, task, examples, cfg, torch.device("cpu"))
    for ex, record in zip(examples, result.records, strict=True):
        context = prompt_ids(tokenizer, render_prompt(tokenizer, ex, False))
        direct = [direct_logprob(model, context, tokenizer(c, add_special_tokens=False)["input_ids"]
                                 + [tokenizer.eos_token_id]) for c in ex.choices]
        assert record["prediction"] == ex.choices[max(range(2), key=direct.__getitem__)]
