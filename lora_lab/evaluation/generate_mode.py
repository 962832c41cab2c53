"""`eval_mode=generate`: greedy completions scored by the task (exact answer, Rouge, …)."""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig

from lora_lab.evaluation.generation import generate_batched
from lora_lab.evaluation.records import EvalResult
from lora_lab.evaluation.registry import EVALUATORS
from lora_lab.tasks.base import Example, Task
from lora_lab.training.tokenize import prompt_ids, render_prompt


@EVALUATORS.register("generate")
def evaluate_generation(model, tokenizer, task: Task, examples: list[Example], cfg: DictConfig,
                        device: torch.device, desc: str = "eval") -> EvalResult:
    texts = [render_prompt(tokenizer, ex, cfg.model.use_chat_template) for ex in examples]
    prompts = [prompt_ids(tokenizer, text) for text in texts]
    started = time.perf_counter()
    predictions = generate_batched(
        model, tokenizer, prompts,
        max_new_tokens=cfg.eval.max_new_tokens or task.cfg.max_new_tokens,  # the task's own, not cfg.task's
        batch_size=cfg.eval.batch_size, stop_strings=task.stop_strings, device=device, desc=desc,
    )
    seconds = time.perf_counter() - started
    scores = [task.score(p, ex) for p, ex in zip(predictions, examples, strict=True)]
    metrics = task.aggregate(scores)
    metrics.update({"eval_examples": len(examples), "eval_seconds": seconds,
                    "eval_examples_per_s": len(examples) / seconds if seconds else 0.0})
    records = [
        {"input": ex.prompt, "target": str(ex.reference), "prediction": p, **s}
        for ex, p, s in zip(examples, predictions, scores, strict=True)
    ]
    return EvalResult(metrics, records)
