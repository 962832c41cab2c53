"""Recipe `eval`: evaluate the base model, or the base model with `adapter_path` loaded on top.

A saved adapter is evaluated as it was trained: its files are checked first (config, record, safetensors
headers, the base it records, tensor shapes against the model's layout from its config), then the base is
rebuilt as the adapter's record says (4-bit NF4 for QLoRA, the recorded dtype) unless
`method.adapter_base=config`. `eval_base` in the metrics says which base was used.
"""

from __future__ import annotations

from typing import Any

from lora_lab.jobs.context import JobContext
from lora_lab.jobs.recipe import recipe
from lora_lab.jobs.registry import JOBS
from lora_lab.jobs.steps import build_task, count_parameters, evaluate
from lora_lab.methods.adapter_files import check_base_model, check_shapes, inspect_adapter
from lora_lab.methods.adapters import base_load_kwargs, load_adapter
from lora_lab.methods.qlora import unpacked_numel
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.structure import empty_model


def base_label(cfg, load_kwargs: dict[str, Any]) -> str:
    """`nf4-4bit` for a quantised base, else the weights' dtype (`float32` for `model.dtype=auto`)."""
    quantization = load_kwargs.get("quantization_config")
    if quantization is not None and getattr(quantization, "load_in_4bit", False):
        return f"{quantization.bnb_4bit_quant_type}-4bit"
    dtype = load_kwargs.get("dtype")
    if dtype is not None:
        return str(dtype).removeprefix("torch.")
    return "float32" if cfg.model.dtype == "auto" else str(cfg.model.dtype)


# It trains nothing (no train.* but the sequence length a classifier head reads) and its one evaluation is not
# before or after anything; the training split and the method target names of a model are not its business.
@JOBS.register("eval")
@recipe("evaluate", result_stage="eval",
        reads=("seed", "adapter_path", "model.*", "task.*", "method.*", "hardware.device", "hardware.num_threads",
               "hardware.num_processes", "hardware.distributed_backend", "train.max_seq_len", "eval.batch_size",
               "eval.max_new_tokens", "eval.save_predictions"),
        never=("model.lora_targets", "task.train_split", "task.train_limit"))
def evaluate_only(ctx: JobContext) -> dict:
    cfg = ctx.cfg
    load_kwargs: dict[str, Any] = {}
    files = None
    if cfg.adapter_path:
        files = inspect_adapter(cfg.adapter_path)  # before anything heavy: a bad folder is one line
        check_base_model(files, cfg.model)
        layout = empty_model(cfg)  # the model's modules from its config alone; None when only weights tell
        if layout is not None:
            check_shapes(files, layout, cfg.model.name)
        if cfg.method.get("adapter_base", "recorded") == "recorded":
            load_kwargs = base_load_kwargs(files.folder)
    task = build_task(ctx)
    examples = task.eval_examples()
    model, tokenizer = load_model_and_tokenizer(cfg, load_kwargs)
    if files is not None:
        check_shapes(files, model, cfg.model.name)  # again on the real model (GGUF sources have no layout early)
        model = load_adapter(model, files.folder)  # any method's format (RoSA's sparse part, GaLore deltas)
    model.to(ctx.device)
    model.requires_grad_(False)  # nothing is trained here: trainable_params 0, total_params the model's (+ adapter)
    metrics = count_parameters(model)
    if "quantization_config" in load_kwargs:  # packed 4-bit storage holds two values per byte
        metrics["total_params"] = sum(unpacked_numel(p) for p in model.parameters())
    metrics["eval_base"] = base_label(cfg, load_kwargs)
    metrics.update(evaluate(ctx, model, tokenizer, task, examples, "eval"))
    return metrics
