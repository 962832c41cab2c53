"""Batched greedy generation gives the same text as one prompt at a time, stops early, and cuts at stops."""

from __future__ import annotations

import pytest
import torch

from lora_lab.evaluation.generation import cut_at_stop, eos_ids, generate_batched
from lora_lab.models import load_model_and_tokenizer
from tests.helpers.lab_helpers import validated_cfg

PROMPTS = ["Q: 2+2?\nA:", "A much longer prompt, so the batch needs left padding.\nA:", "x", "Hello there, model"]


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_model_and_tokenizer(validated_cfg())
    return model.eval(), tokenizer


def ids(tokenizer, texts):
    return [tokenizer(t)["input_ids"] for t in texts]


def test_batched_equals_one_at_a_time(tiny):
    model, tokenizer = tiny
    prompts = ids(tokenizer, PROMPTS)
    batched = generate_batched(model, tokenizer, prompts, max_new_tokens=12, batch_size=4)
    single = [generate_batched(model, tokenizer, [p], max_new_tokens=12, batch_size=1)[0] for p in prompts]
    assert batched == single
    plain = [tokenizer.decode(model.generate(torch.tensor([p]), max_new_tokens=12, do_sample=False,
                                             pad_token_id=tokenizer.pad_token_id)[0, len(p):],
                              skip_special_tokens=True).strip() for p in prompts]
    assert batched == plain  # left padding changes nothing: positions follow the attention mask


def test_outputs_come_back_in_input_order(tiny):
    model, tokenizer = tiny
    prompts = ids(tokenizer, PROMPTS)
    forward = generate_batched(model, tokenizer, prompts, max_new_tokens=6, batch_size=2)
    backward = generate_batched(model, tokenizer, prompts[::-1], max_new_tokens=6, batch_size=2)
    assert forward == backward[::-1]


def test_batch_stops_when_every_row_is_done(tiny):
    model, tokenizer = tiny
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        # every printable character is a stop string: all rows are done after their first token
        out = generate_batched(model, tokenizer, ids(tokenizer, PROMPTS), max_new_tokens=50, batch_size=4,
                               stop_strings=[chr(c) for c in range(32, 127)] + ["\n", "\t", "\r", "\x0b", "\x0c"])
    finally:
        handle.remove()
    assert len(calls) == 1  # one forward (the prompt), not 50
    assert out == [""] * len(PROMPTS)


def test_cut_at_stop():
    assert cut_at_stop("42\nQuestion: next", ["\n"]) == "42"
    assert cut_at_stop("a END b STOP", ["STOP", "END"]) == "a "
    assert cut_at_stop("no stop", ["\n"]) == "no stop"


def test_eos_ids_merge_the_generation_config(tiny):
    model, tokenizer = tiny
    model.generation_config.eos_token_id = [5, tokenizer.eos_token_id]
    try:
        assert eos_ids(model, tokenizer) == [tokenizer.eos_token_id, 5]
    finally:
        model.generation_config.eos_token_id = tokenizer.eos_token_id


def test_generation_length_comes_from_the_evaluated_task_not_the_job_task(tiny):
    """A meta job evaluates a bank member's task while cfg.task is whatever the command line chose."""
    from omegaconf import OmegaConf

    from lora_lab.evaluation import EVALUATORS
    from lora_lab.tasks import TASKS

    model, tokenizer = tiny
    cfg = validated_cfg("task.max_new_tokens=30")  # the job's task (arith) would allow 30 tokens
    short = OmegaConf.merge(cfg.task, {"max_new_tokens": 1})
    task = TASKS.get("arith")(short)
    examples = task.eval_examples()[:3]
    result = EVALUATORS.get("generate")(model, tokenizer, task, examples, cfg, torch.device("cpu"))
    for record in result.records:
        assert len(tokenizer(record["prediction"], add_special_tokens=False)["input_ids"]) <= 1
