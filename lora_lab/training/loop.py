"""The training loop every fine-tuning method shares: read it top to bottom.

Per optimizer step: draw `grad_accum` length-grouped batches (each split into `micro_batch_size` rows when set,
to bound activation memory), weight each micro-batch's mean loss by
its share of the step's answer tokens (so accumulation equals one big batch), add the method's extra loss,
backward, let the method act (pruning, mask selection), clip, step, schedule.

A non-finite loss or gradient norm never reaches the weights: `train.on_nonfinite=stop` raises `Diverged`
(the run fails, no adapter is saved), `skip_step` drops that step's update. SIGINT/SIGTERM stop the loop at
the end of the current step (`lora_lab.utils.interrupts`), every data-parallel rank at the same step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm

from lora_lab.config.errors import Diverged, Interrupted
from lora_lab.methods.base import Method
from lora_lab.models.kinds import kind_of
from lora_lab.training import distributed
from lora_lab.training.batching import batch_order, collate, count_targets, micro_batches
from lora_lab.training.loss import model_loss
from lora_lab.training.optimization import Optimization
from lora_lab.training.tokenize import Features
from lora_lab.utils import interrupts


@dataclass
class TrainState:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    tokens: int = 0  # all non-pad tokens seen (prompt + answer)
    seconds: float = 0.0
    skipped_steps: int = 0  # train.on_nonfinite=skip_step: steps whose update was dropped


@dataclass
class TrainResult:
    steps: int
    losses: list[float]
    tokens: int
    seconds: float
    skipped_steps: int = 0
    replica_max_abs_diff: float | None = None  # data-parallel runs: trainable weights' spread across ranks

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


StepCallback = Callable[[TrainState, Optimization], None]


def autocast_context(device: torch.device, precision: str):
    """Mixed precision for the forward pass: matmuls in `precision`, the weights (the adapter's master copy
    included) stay in their own dtype — float32 — so small updates are not rounded away. On CPU only bf16
    (validation refuses it where the CPU has no bf16 units, and float16 there)."""
    if device.type == "cuda" and precision in {"bfloat16", "float16"}:
        return torch.autocast("cuda", dtype=getattr(torch, precision))
    if device.type == "cpu" and precision == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def gradient_norm(params: list[torch.nn.Parameter], max_norm: float) -> float:
    """The total gradient norm before clipping (clipped to `max_norm` when it is > 0)."""
    if max_norm and max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: a DTensor
    return float(norm)


def nonfinite(loss: float, grad_norm: float) -> str | None:
    """Why this step must not update the weights, or None."""
    if not math.isfinite(loss):
        return f"non-finite train loss ({loss})"
    if not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})"
    return None


def check_finite_weights(params: list[torch.nn.Parameter], step: int, parallel_device: torch.device | None = None) -> None:
    """The last guard before an adapter is saved: trained weights with NaN/inf are never presented as a result.
    Data-parallel ranks (FSDP: each holds a shard) decide together."""
    local = [p.detach().to_local() if hasattr(p, "to_local") else p.detach() for p in params]
    bad = float(any(not bool(torch.isfinite(t).all()) for t in local))
    if parallel_device is not None:
        bad = distributed.global_sum([bad], parallel_device)[0]
    if bad:
        raise Diverged(f"non-finite trained weights after step {step}; no adapter saved", step=step)


def train(
    model: torch.nn.Module,
    features: list[Features],
    method: Method,
    cfg: DictConfig,
    *,
    pad_id: int,
    device: torch.device,
    state: TrainState | None = None,
    optimization: Optimization | None = None,
    on_step: StepCallback | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> TrainResult:
    tcfg = cfg.train
    state = state or TrainState()
    optimization = optimization or Optimization.build(model, method, cfg)
    if tcfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    # Data-parallel: DDP all-reduces (averages) gradients on the last micro-batch of each step (no_sync before);
    # a model sharded by FSDP (finetune shards it before the optimizer sees its parameters) reduce-scatters them.
    sharded = world_size > 1 and distributed.is_sharded(model)
    ddp = distributed.wrap_model(model, device) if world_size > 1 and not sharded else None
    parallel = ddp is not None or sharded
    forward = torch.compile(ddp or model) if tcfg.compile else (ddp or model)

    answer_only = bool(tcfg.answer_only_logits) and kind_of(cfg).causal
    lengths = [len(f.input_ids) for f in features]
    batches = batch_order(lengths, tcfg.batch_size, seed=tcfg.seed, group_by_length=tcfg.group_by_length)
    # Skip what a resumed run has already consumed, so it sees the same data it would have seen.
    for _ in range(state.step * tcfg.grad_accum * world_size):
        next(batches)

    model.train()
    progress = tqdm(total=tcfg.max_steps, initial=state.step, desc="train", disable=True if rank != 0 else None,
                    dynamic_ncols=True)
    with interrupts.deferred():
        while state.step < tcfg.max_steps:
            started = time.perf_counter()
            window = [next(batches) for _ in range(tcfg.grad_accum * world_size)][rank::world_size]
            window = [part for idx in window for part in micro_batches(idx, lengths, tcfg.get("micro_batch_size"))]
            micro = [collate([features[i] for i in idx], pad_id, left=answer_only) for idx in window]
            answer_tokens = [count_targets(b["labels"]) for b in micro]
            # Normalise by the GLOBAL answer-token count; x world_size undoes DDP's averaging over ranks.
            total_answer = max(distributed.global_sum([sum(answer_tokens)], device)[0] if parallel else sum(answer_tokens), 1)
            step_loss, step_tokens = 0.0, 0
            for i, (batch, n_answer) in enumerate(zip(micro, answer_tokens, strict=True)):
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                last = i == len(micro) - 1
                sync = ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext()
                if sharded:
                    model.set_requires_gradient_sync(last)
                with sync:
                    with autocast_context(device, cfg.hardware.precision):
                        share = model_loss(forward, batch, answer_only_logits=answer_only) * (n_answer / total_answer)
                    loss = share * world_size
                    extra = method.extra_loss(model)
                    if extra is not None:
                        loss = loss + extra / len(micro)
                    loss.backward()
                step_loss += float(share.detach()) + (float(extra.detach()) / len(micro) / world_size if extra is not None else 0.0)
                step_tokens += int(batch["attention_mask"].sum())
            if parallel:  # a signal is acted on together, so every rank leaves at the same step
                votes = [float(interrupts.pending() == sig) for sig in interrupts.SIGNALS]
                step_loss, step_tokens, *votes = distributed.global_sum([step_loss, step_tokens, *votes], device)
                stop_signal = next((sig for sig, vote in zip(interrupts.SIGNALS, votes, strict=True) if vote), None)
            state.tokens += int(step_tokens)
            method.after_backward(model, state.step)
            grad_norm = gradient_norm(method.trainable_parameters(model), tcfg.max_grad_norm)  # clips when > 0
            problem = nonfinite(step_loss, grad_norm)
            if problem and tcfg.get("on_nonfinite", "stop") == "stop":
                raise Diverged(f"{problem} in training step {state.step + 1} (train.on_nonfinite=stop); "
                               f"no adapter saved", step=state.step)
            if problem:  # skip_step: drop this update, keep the schedule in step with the step count
                state.skipped_steps += 1
            optimization.step(update=not problem)
            if not problem:
                method.after_optimizer_step(model, state.step)
            state.step += 1
            state.losses.append(step_loss)
            state.seconds += time.perf_counter() - started
            progress.update(1)
            progress.set_postfix(loss=f"{step_loss:.4f}")
            if on_step is not None:
                on_step(state, optimization)
            stop_signal = stop_signal if parallel else interrupts.pending()
            if stop_signal:
                raise Interrupted(stop_signal, step=state.step)
    progress.close()
    model.eval()
    check_finite_weights(method.trainable_parameters(model), state.step, device if parallel else None)
    spread = distributed.replica_max_abs_diff(method.trainable_parameters(model)) if ddp is not None else None
    return TrainResult(steps=state.step, losses=state.losses, tokens=state.tokens, seconds=state.seconds,
                       skipped_steps=state.skipped_steps, replica_max_abs_diff=spread)
