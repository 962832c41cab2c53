"""`eval_mode=choice`: pick one of an example's `choices` (a classification task's label words).

How the choices are scored depends on the model (`CHOOSERS`, keyed by `model.kind`): a causal LM by the
log-likelihood of each label word (+ EOS, as trained) after the prompt; a sequence-classification model by its
head's logits. Either way the prediction is the argmax and the task scores it like a generated answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from omegaconf import DictConfig

from lora_lab.evaluation.classifier_head import head_logits
from lora_lab.evaluation.loglik import continuation_logprobs
from lora_lab.evaluation.records import EvalResult
from lora_lab.evaluation.registry import EVALUATORS
from lora_lab.registry import Registry
from lora_lab.tasks.base import Example, Task
from lora_lab.training.tokenize import prompt_ids, render_prompt

Chooser = Callable[..., list[list[float]]]  # (model, tokenizer, examples, cfg, device, desc) -> scores per choice
CHOOSERS: Registry[Chooser] = Registry("choice scorer", "model.kind")


@CHOOSERS.register("causal_lm")
def label_loglikelihoods(model, tokenizer, examples: list[Example], cfg: DictConfig, device: torch.device,
                         desc: str, task_cfg: DictConfig) -> list[list[float]]:
    """Summed log p(label word [+ EOS] | prompt), tokenised exactly as the training target is."""
    with_eos = bool(task_cfg.get("choice_eos", True)) and tokenizer.eos_token_id is not None
    pairs, owners = [], []
    for n, ex in enumerate(examples):
        context = prompt_ids(tokenizer, render_prompt(tokenizer, ex, cfg.model.use_chat_template))
        for choice in ex.choices:
            continuation = tokenizer(choice, add_special_tokens=False)["input_ids"]
            pairs.append((context, continuation + [tokenizer.eos_token_id] if with_eos else continuation))
            owners.append(n)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    flat = continuation_logprobs(model, pairs, pad_id=pad_id, batch_size=cfg.eval.batch_size, device=device, desc=desc)
    scores: list[list[float]] = [[] for _ in examples]
    for n, value in zip(owners, flat, strict=True):
        scores[n].append(value)
    return scores


@CHOOSERS.register("sequence_classification")
def head_scores(model, tokenizer, examples: list[Example], cfg: DictConfig, device: torch.device,
                desc: str, task_cfg: DictConfig) -> list[list[float]]:
    return head_logits(model, tokenizer, examples, max_len=cfg.train.max_seq_len, batch_size=cfg.eval.batch_size,
                       device=device, desc=desc)


@EVALUATORS.register("choice")
def evaluate_choice(model, tokenizer, task: Task, examples: list[Example], cfg: DictConfig,
                    device: torch.device, desc: str = "eval") -> EvalResult:
    for ex in examples:
        if not ex.choices:
            raise ValueError(f"task {task.name!r} uses eval_mode=choice but gives an example without choices")
    started = time.perf_counter()
    # the task's own settings (task.cfg), not cfg.task: a meta job evaluates a bank member's task
    scores = CHOOSERS.get(cfg.model.kind)(model, tokenizer, examples, cfg, device, desc, task.cfg)
    seconds = time.perf_counter() - started
    predictions = [ex.choices[max(range(len(s)), key=s.__getitem__)] for ex, s in zip(examples, scores, strict=True)]
    per_example = [task.score(p, ex) for p, ex in zip(predictions, examples, strict=True)]
    metrics = task.aggregate(per_example)
    metrics.update({"eval_examples": len(examples), "eval_seconds": seconds,
                    "eval_examples_per_s": len(examples) / seconds if seconds else 0.0})
    records = [
        {"input": ex.prompt, "target": str(ex.reference), "prediction": p, **s,
         "choice_scores": dict(zip(ex.choices, map(float, sc), strict=True))}
        for ex, p, s, sc in zip(examples, predictions, per_example, scores, strict=True)
    ]
    return EvalResult(metrics, records)
