"""`eval_mode=perplexity`: perplexity of the task's documents, scored as one stream (sliding window).

Documents are tokenised one by one and joined with a newline — the way they sit in the corpus — so each
token can be charged to its document: the metrics cover the whole stream, the records give each document.
"""

from __future__ import annotations

import math
import time

import torch
from omegaconf import DictConfig

from lora_lab.evaluation import EVALUATORS
from lora_lab.evaluation.records import EvalResult
from lora_lab.evaluation.sliding_window import token_nll
from lora_lab.tasks.base import Example, Task


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
    nll = token_nll(model, ids, context=task.cfg.context, stride=task.cfg.stride,
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
