"""`eval_mode=perplexity`: perplexity of the task's documents, scored as one stream (sliding window).

Causal LMs get the perplexity; masked-LM encoders the pseudo-perplexity (`pseudo_perplexity.py`), both under
the same metric names so reports line up (the run's `model` says which one it is).

Documents are tokenised one by one and joined with a newline — the way they sit in the corpus — so each
token can be charged to its document: the metrics cover the whole stream, the records give each document.
"""

from __future__ import annotations

import math
import time

import torch
from omegaconf import DictConfig

from lora_lab.evaluation.pseudo_perplexity import masked_token_nll
from lora_lab.evaluation.records import EvalResult
from lora_lab.evaluation.registry import EVALUATORS
from lora_lab.evaluation.sliding_window import token_nll
from lora_lab.tasks.base import Example, Task
from lora_lab.training.tokenize import encoder_max_length


def stream_ids(tokenizer, examples: list[Example]) -> tuple[list[int], list[int]]:
    """Token ids of the documents joined by newlines, and the index of the document each token belongs to."""
    ids: list[int] = []
    owner: list[int] = []
    for n, ex in enumerate(examples):
        text = ex.target if n == len(examples) - 1 else f"{ex.target}\n"
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        owner.extend([n] * len(piece))
    return ids, owner


def _causal(model, tokenizer, ids, **kwargs) -> torch.Tensor:
    return token_nll(model, ids, **kwargs)


def _masked(model, tokenizer, ids, *, context: int, stride: int, **kwargs) -> torch.Tensor:
    """Pseudo-perplexity: each window wrapped as the encoder was trained ([CLS] … [SEP]) and cut to the
    encoder's position limit (WikiText-2's default context of 1024 is beyond BERT-style models)."""
    wrap = ([tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else [],
            [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else [])
    fitted = encoder_max_length(tokenizer, context + len(wrap[0]) + len(wrap[1])) - len(wrap[0]) - len(wrap[1])
    stride = stride if stride < fitted else fitted // 2
    return masked_token_nll(model, ids, context=fitted, stride=stride, mask_id=tokenizer.mask_token_id, wrap=wrap,
                            **kwargs)


# model.kind → how the stream is scored: next-token likelihood, or masked-token pseudo-likelihood
STREAM_SCORERS = {"causal_lm": _causal, "masked_lm": _masked}


@EVALUATORS.register("perplexity")
def evaluate_perplexity(model, tokenizer, task: Task, examples: list[Example], cfg: DictConfig,
                        device: torch.device, desc: str = "eval") -> EvalResult:
    ids, owner = stream_ids(tokenizer, examples)
    cap = task.cfg.get("max_eval_tokens")  # the task's own settings: a meta job evaluates a bank member's task
    if cap:
        ids, owner = ids[:cap], owner[:cap]
    if len(ids) < 2:
        raise ValueError(f"task {task.name!r}: the evaluation text has {len(ids)} token(s); perplexity needs >= 2")
    started = time.perf_counter()
    score = STREAM_SCORERS[cfg.model.kind]
    nll = score(model, tokenizer, ids, context=task.cfg.context, stride=task.cfg.stride,
                batch_size=task.cfg.windows_per_batch, device=device, desc=desc)
    seconds = time.perf_counter() - started
    mean_nll = float(nll.mean())
    metrics = {"perplexity": math.exp(mean_nll), "mean_nll": mean_nll, "eval_tokens": len(nll),
               "eval_documents": len(examples), "eval_seconds": seconds,
               "eval_tokens_per_s": len(nll) / seconds if seconds else 0.0}
    per_doc: dict[int, list[float]] = {}
    for token, doc in enumerate(owner[1:]):
        per_doc.setdefault(doc, []).append(float(nll[token]))
    records = []
    for n, ex in enumerate(examples):
        values = per_doc.get(n, [])
        doc_nll = sum(values) / len(values) if values else float("nan")
        first_line = next((line.strip() for line in ex.target.split("\n") if line.strip()), "")
        records.append({"input": first_line[:200], "target": "", "prediction": "", "tokens": len(values),
                        "mean_nll": doc_nll, "perplexity": math.exp(doc_nll) if values else float("nan")})
    return EvalResult(metrics, records)
