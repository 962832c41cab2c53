"""Steps shared by the recipes: build the task, evaluate, count parameters, save an adapter atomically."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from lora_lab.evaluation import EVALUATORS
from lora_lab.evaluation.progress import eval_log
from lora_lab.evaluation.records import EvalResult
from lora_lab.jobs.context import JobContext
from lora_lab.tasks import TASKS
from lora_lab.tasks.base import Example, Task
from lora_lab.training.progress import clock
from lora_lab.utils.io import atomic_directory


def build_task(ctx: JobContext) -> Task:
    return TASKS.get(ctx.cfg.task.name)(ctx.cfg.task)


def evaluate(ctx: JobContext, model, tokenizer, task: Task, examples: list[Example], stage: str) -> dict[str, float]:
    """Evaluate, write `predictions_<stage>.jsonl`, log, and return metrics prefixed with the stage. Its progress
    goes to the run dir's train.log (and to stdout when that is not a terminal) as it does for training: a first
    and a closing line here, a line per tenth of the batches from the evaluator (`evaluation/progress.py`)."""
    unit = "documents" if task.eval_mode == "perplexity" else "examples"
    with eval_log(ctx.run_dir, stage) as progress:
        progress.write(f"0/{len(examples)} {unit}")
        started = time.perf_counter()
        result: EvalResult = EVALUATORS.get(task.eval_mode)(
            model, tokenizer, task, examples, ctx.cfg, ctx.device, desc=f"eval ({stage})"
        )
        progress.write(closing_line(result.metrics, task.primary_metric, len(examples), unit,
                                    time.perf_counter() - started))
    if ctx.cfg.eval.save_predictions:
        result.save_predictions(ctx.run_dir / f"predictions_{stage}.jsonl")
    metrics = stage_metrics(result.metrics, stage)
    ctx.logger.log(metrics)
    return metrics


def closing_line(metrics: dict[str, float], primary: str, count: int, unit: str, seconds: float) -> str:
    """`40/40 examples accuracy 0.4250 examples/s 3.1 elapsed 0:00:13`."""
    value = metrics.get(primary)
    score = f" {primary} {value:.4f}" if isinstance(value, int | float) else ""
    rate = count / seconds if seconds > 0 else 0.0
    return f"{count}/{count} {unit}{score} {unit}/s {rate:.1f} elapsed {clock(seconds)}"


def stage_metrics(metrics: dict[str, float], stage: str) -> dict[str, float]:
    """`<stage>_<name>`, one prefix each: an evaluator's own `eval_` names (`eval_seconds`, `eval_examples`) stay
    as they are for the `eval` stage (method=none) instead of becoming `eval_eval_...`; `before_eval_seconds`,
    `after_accuracy`, `eval_accuracy`."""
    return {key if key.startswith(f"{stage}_") else f"{stage}_{key}": value for key, value in metrics.items()}


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts, and `model_bytes`: what the weights and buffers occupy as held (transformers'
    `get_memory_footprint`), so a 4-bit base counts its packed bytes, not its float parameter count."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_params": trainable, "total_params": total, "model_bytes": int(model.get_memory_footprint())}


def save_atomically(save_fn, target: Path) -> None:
    """Write into a temp folder beside `target`, then swap it in: a crash or a full disk never leaves half an
    adapter, and the folder gets the umask's permissions (not tempfile's 0700)."""
    with atomic_directory(target) as tmp:
        save_fn(tmp)
