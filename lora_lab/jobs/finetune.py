"""Recipe `finetune`: evaluate the base model, apply the method, train, save the adapter, evaluate again."""

from __future__ import annotations

import math

import torch

from lora_lab.config.errors import RunStopped
from lora_lab.jobs.context import JobContext
from lora_lab.jobs.recipe import recipe
from lora_lab.jobs.registry import JOBS
from lora_lab.jobs.steps import build_task, count_parameters, evaluate, save_atomically
from lora_lab.methods import METHODS
from lora_lab.methods.adapters import load_adapter
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.structure import check_targets, empty_model
from lora_lab.training.checkpoint import Checkpointing
from lora_lab.training.distributed import full_trainable_state, rank_and_world, shard_model
from lora_lab.training.featurizers import featurizer_for
from lora_lab.training.loop import train
from lora_lab.training.optimization import Optimization
from lora_lab.training.progress import ProgressLog


@JOBS.register("finetune")
@recipe("finetune", result_stage="after", result_switch="eval.after",
        reads=("seed", "model.*", "task.*", "method.*", "hardware.*", "train.*", "eval.*"))
def finetune(ctx: JobContext) -> dict:
    cfg = ctx.cfg
    task = build_task(ctx)
    method = METHODS.get(cfg.method.name)(cfg)
    train_examples, eval_examples = task.train_examples(), task.eval_examples()  # bad data fails before loading

    skeleton = empty_model(cfg)  # the layout from the config alone: targets that match nothing fail before loading
    if skeleton is not None:
        check_targets(cfg, skeleton)
    model, tokenizer = load_model_and_tokenizer(cfg, method.model_load_kwargs())
    if skeleton is None:  # no config without the weights (GGUF): still before the first evaluation
        check_targets(cfg, model)
    model = method.place(method.prepare_loaded(model), ctx.device)
    metrics: dict = {}
    if cfg.eval.before:
        metrics.update(evaluate(ctx, model, tokenizer, task, eval_examples, "before"))

    torch.manual_seed(int(cfg.seed))  # adapter init (e.g. LoRA A) is a function of the seed, in every process
    model = method.apply(model)
    metrics.update(count_parameters(model))
    featurize = featurizer_for(cfg.model.kind)  # prompt + answer ids, or text + class id for a SeqCls head
    features = [featurize(tokenizer, ex, cfg.model.use_chat_template, cfg.train.max_seq_len) for ex in train_examples]
    rank, world_size = rank_and_world()  # (0, 1) unless hardware.num_processes > 1 (training/distributed.py)
    sharded = world_size > 1 and cfg.hardware.data_parallel == "fsdp"
    if sharded:  # before the optimizer is built: FSDP replaces the parameters with their shards
        model = shard_model(model)
    optimization = Optimization.build(model, method, cfg)  # one optimizer + schedule: restored, stepped, saved
    # resume from <run_dir>/checkpoint, log train_loss/lr, checkpoint every train.checkpoint_every steps
    checkpoints = Checkpointing(ctx, model, method, rank=rank)
    progress = ProgressLog(ctx.run_dir, cfg.train.log_every, cfg.train.max_steps) if rank == 0 else None

    def on_step(state, optimization):
        checkpoints.on_step(state, optimization)
        if progress is not None:
            progress.on_step(state, optimization)

    try:
        result = train(
            model, features, method, cfg, pad_id=tokenizer.pad_token_id, device=ctx.device, rank=rank,
            world_size=world_size,
            on_step=on_step, state=checkpoints.restore(optimization), optimization=optimization,
        )
    except RunStopped as stop:  # diverged or interrupted: keep the loss history, checkpoint an interrupt
        checkpoints.stopped(stop)
        raise
    metrics.update(checkpoints.summary(result.losses))
    metrics.update({
        "train_steps": result.steps,
        **loss_summary(result.losses),
        "train_seconds": result.seconds,
        "train_tokens": result.tokens,
        "train_tokens_per_s": result.tokens_per_second,
    })
    if result.skipped_steps:
        metrics["train_skipped_steps"] = result.skipped_steps
    if world_size > 1:
        metrics.update({"world_size": world_size, "data_parallel": cfg.hardware.data_parallel})
    if result.replica_max_abs_diff is not None:
        metrics["replica_max_abs_diff"] = result.replica_max_abs_diff
    metrics.update(method.extra_metrics(model))
    if sharded:
        gathered = full_trainable_state(model)  # a collective: every rank takes part, rank 0 receives
        if rank == 0:
            save_atomically(lambda folder: method.save(model, folder, state_dict=gathered), ctx.adapter_dir)
        if cfg.eval.after:  # the sharded model only runs with every rank; evaluate a fresh copy with the adapter
            base, _ = load_model_and_tokenizer(cfg, method.model_load_kwargs())  # same tokenizer
            model = load_adapter(method.place(method.prepare_loaded(base), ctx.device), ctx.adapter_dir)
    else:
        save_atomically(lambda folder: method.save(model, folder), ctx.adapter_dir)

    if cfg.eval.after:
        metrics.update(evaluate(ctx, model, tokenizer, task, eval_examples, "after"))
    return metrics


def loss_summary(losses: list[float]) -> dict[str, float | None]:
    """First and final (mean of the last 5) train loss over the steps that had a finite one; null for a run
    that took no step (train.max_steps=0) rather than a number it never measured."""
    finite = [x for x in losses if math.isfinite(x)]
    last = [x for x in losses[-5:] if math.isfinite(x)]
    return {"first_train_loss": finite[0] if finite else None,
            "final_train_loss": sum(last) / len(last) if last else None}
