"""Recipe `eval`: evaluate the base model, or the base model with `adapter_path` loaded on top."""

from __future__ import annotations

from pathlib import Path

from lora_lab.config.errors import ConfigError
from lora_lab.jobs import JOBS
from lora_lab.jobs.context import JobContext
from lora_lab.jobs.steps import build_task, count_parameters, evaluate
from lora_lab.models import load_model_and_tokenizer


@JOBS.register("eval")
def evaluate_only(ctx: JobContext) -> dict:
    cfg = ctx.cfg
    task = build_task(ctx)
    examples = task.eval_examples()
    model, tokenizer = load_model_and_tokenizer(cfg)
    if cfg.adapter_path:
        if not (Path(cfg.adapter_path) / "adapter_config.json").is_file():
            raise ConfigError("adapter_path", cfg.adapter_path, "no adapter_config.json in this folder")
        from lora_lab.methods.adapters import load_adapter

        model = load_adapter(model, Path(cfg.adapter_path))  # any method's format (RoSA's sparse part, GaLore deltas)
    model.to(ctx.device)
    metrics = count_parameters(model)
    metrics.update(evaluate(ctx, model, tokenizer, task, examples, "eval"))
    return metrics
