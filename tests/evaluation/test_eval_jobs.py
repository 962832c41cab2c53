"""End to end on the tiny model: `method=none` per task, and short fine-tunes for each training shape."""

from __future__ import annotations

import json

import pytest

from lora_lab.jobs import run_job
from tests.helpers.task_cases import task_cfg

METRICS = {
    "gsm8k": ["eval_accuracy"],
    "sst2": ["eval_accuracy", "eval_macro_f1"],
    "imdb": ["eval_accuracy", "eval_macro_f1"],
    "agnews": ["eval_accuracy", "eval_macro_f1"],
    "news_summary": ["eval_rouge1", "eval_rouge2", "eval_rougeL"],
    "wikitext2": ["eval_perplexity", "eval_mean_nll", "eval_tokens"],
    "sni": ["eval_rougeL", "eval_exact_match"],
}


def read(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = [json.loads(line) for line in (run_dir / "predictions_eval.jsonl").read_text().splitlines()]
    return metrics, predictions


@pytest.mark.parametrize("task", sorted(METRICS))
def test_method_none_evaluates_each_task(task, run_dir):
    limit = "task.eval_limit=1" if task == "wikitext2" else "task.eval_limit=6"
    run_job(task_cfg(task, "method=none", limit), run_dir)
    metrics, predictions = read(run_dir)
    assert metrics["status"] == "ok" and metrics["task"] == task
    for key in METRICS[task]:
        assert isinstance(metrics[key], int | float), key
    assert metrics["score"] == metrics[METRICS[task][0]]
    assert predictions and {"input", "target", "prediction"} <= set(predictions[0])
    assert not [key for key in metrics if key.startswith("eval_eval_")]  # one stage prefix: eval_seconds
    assert metrics["eval_seconds"] > 0
    if task != "wikitext2":
        assert len(predictions) == metrics["eval_examples"] == 6


def test_classification_finetune_on_label_words(run_dir):
    metrics = run_job(task_cfg("sst2", "method=lora", "task.eval_limit=4", "task.train_limit=32"), run_dir)
    assert metrics["status"] == "ok" and "before_accuracy" in metrics and "after_macro_f1" in metrics
    assert metrics["train_steps"] == 4


def test_classification_head_finetune(run_dir):
    """model.kind=sequence_classification: class ids as labels, evaluated by the head's argmax."""
    metrics = run_job(task_cfg("agnews", "model.kind=sequence_classification", "method=lora",
                               "task.eval_limit=4", "task.train_limit=32"), run_dir)
    assert metrics["status"] == "ok" and 0 <= metrics["after_accuracy"] <= 1
    records = [json.loads(line) for line in (run_dir / "predictions_after.jsonl").read_text().splitlines()]
    assert len(records[0]["choice_scores"]) == 4  # one logit per AG News class


def test_language_modelling_finetune(run_dir):
    metrics = run_job(task_cfg("wikitext2", "method=lora", "task.eval_limit=1", "task.train_limit=8",
                               "train.max_seq_len=64"), run_dir)
    assert metrics["status"] == "ok" and metrics["after_perplexity"] > 1
    assert metrics["train_tokens"] > 0
