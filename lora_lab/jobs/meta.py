"""Recipe `meta`: build an adapter for a dataset without gradients, from a bank of LoRAs.

bank → token histograms (cached) → distances target×bank (metric group) → coefficients (method.version,
leave-one-out or leave-source-out) → combined PEFT adapter (method.combine) → evaluation of the base model
and of the generated adapter on the target task. Timings are recorded per stage.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from lora_lab.jobs.context import JobContext
from lora_lab.jobs.recipe import recipe
from lora_lab.jobs.registry import JOBS
from lora_lab.jobs.steps import build_task, evaluate
from lora_lab.meta import (
    ArrayCache,
    compute_coefficients,
    exclusion_mask,
    load_bank,
    pairwise_distance,
    predict_adapter,
)
from lora_lab.meta.bank import check_bank_model
from lora_lab.meta.cache import bank_fingerprint
from lora_lab.meta.gram import bank_gram_matrix
from lora_lab.meta.mlp import train_mlp_transform
from lora_lab.meta.representation import Representer, task_from_reference
from lora_lab.methods.adapter_files import check_shapes, inspect_adapter
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.structure import empty_model


@contextmanager
def timed(timings: dict[str, float], stage: str):
    started = time.perf_counter()
    yield
    timings[f"time_{stage}_s"] = time.perf_counter() - started


def check_bank_layout(bank, cfg) -> None:
    """Members share their shapes (load_bank checks that); the first one must fit the model, known from its
    config alone where possible, so a bank of another base fails before the model loads."""
    layout = empty_model(cfg)
    if layout is not None:
        check_shapes(inspect_adapter(bank.members[0].adapter_dir, key="bank member"), layout, cfg.model.name)


# It trains nothing by gradient (no train.* but the sequence length a classifier head reads); the generated
# adapter is always evaluated (`after`), the base model only with eval.before.
@JOBS.register("meta")
@recipe("meta", result_stage="after",
        reads=("seed", "model.*", "task.*", "method.*", "metric.*", "hardware.device", "hardware.num_threads",
               "hardware.num_processes", "hardware.distributed_backend", "train.max_seq_len", "eval.before",
               "eval.batch_size", "eval.max_new_tokens", "eval.save_predictions"),
        never=("model.lora_targets",))
def meta_generate(ctx: JobContext) -> dict:
    cfg, mcfg = ctx.cfg, ctx.cfg.method
    timings: dict[str, float] = {}
    with timed(timings, "load_bank"):
        bank = load_bank(mcfg.bank_dir)
        check_bank_model(bank, cfg.model)
        check_bank_layout(bank, cfg)
    if mcfg.target:  # leave-one-out over the bank: the target is a member's own dataset
        target_index = bank.index(mcfg.target)
        target_member = bank.members[target_index]
        target_reference, target_task = dict(target_member.dataset), task_from_reference(target_member.dataset)
        target_name, target_source = target_member.name, target_member.source
    else:  # a new dataset: the configured task
        target_task = build_task(ctx)
        target_reference = OmegaConf.to_container(cfg.task)
        target_name, target_source = str(cfg.task.get("sni_task") or cfg.task.name), None
    eval_examples = target_task.eval_examples()

    with timed(timings, "load_model"):
        model, tokenizer = load_model_and_tokenizer(cfg)
    cache = ArrayCache(Path(mcfg.bank_dir) / ".cache")
    represent = Representer(cfg, tokenizer, cache)
    with timed(timings, "represent"):
        members = np.stack([represent(dict(m.dataset)) for m in bank.members])
        target = represent(target_reference, target_task)[None, :]
    options = {"epsilon": cfg.metric.kl_epsilon} if cfg.metric.name == "kl" else {}
    with timed(timings, "distances"):
        distances = pairwise_distance(cfg.metric.name, target, members, **options)
    by_source = mcfg.exclude == "source"
    exclude = exclusion_mask([target_name], bank.names, [target_source] if by_source else None,
                             bank.sources if by_source else None)

    transform = None
    if mcfg.version == "mlp":
        with timed(timings, "mlp"):
            gram_parts = {"kind": "gram", "members": bank_fingerprint(bank.names, bank.adapter_dirs)}
            gram = cache.get_or_compute(gram_parts, lambda: bank_gram_matrix(bank.adapter_dirs))
            bank_distances = pairwise_distance(cfg.metric.name, members, members, **options)
            train_indices = [i for i in range(len(bank)) if not exclude[0, i]]  # the target stays held out
            mlp_options = OmegaConf.to_container(mcfg.mlp) if mcfg.mlp else {}
            fit = train_mlp_transform(bank_distances, gram, train_indices, temperature=mcfg.temperature,
                                      seed=cfg.seed, **mlp_options)
            transform = fit.transform
    with timed(timings, "coefficients"):
        coefficients = compute_coefficients(mcfg.version, distances, exclude, mcfg.temperature, transform)[0]
    with timed(timings, "predict"):
        prediction = predict_adapter(bank.adapter_dirs, coefficients, ctx.adapter_dir, mode=mcfg.combine,
                                     top_k=mcfg.top_k, rank=mcfg.svd_rank)

    metrics: dict[str, Any] = {"bank_size": len(bank), "target": target_name, "adapter_rank": prediction.rank,
                               "primary_metric": target_task.primary_metric}
    order = np.argsort(-coefficients)[:5]
    for place, index in enumerate(order, 1):
        metrics[f"top{place}_member"] = bank.names[index]
        metrics[f"top{place}_coefficient"] = float(coefficients[index])
        metrics[f"top{place}_distance"] = float(distances[0, index])
    model.to(ctx.device)
    with timed(timings, "eval"):
        if cfg.eval.before:
            metrics.update(evaluate(ctx, model, tokenizer, target_task, eval_examples, "before"))
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(model, str(ctx.adapter_dir)).to(ctx.device)
        metrics.update(evaluate(ctx, tuned, tokenizer, target_task, eval_examples, "after"))
    metrics.update(timings)
    return metrics
