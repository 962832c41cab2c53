"""Training checkpoints, so a preempted or killed job continues where it stopped instead of starting over.

A checkpoint is `<run_dir>/checkpoint/`: `state.pt` (trainable weights, optimizer, scheduler, RNG states, the
method's own state, the `TrainState`) and a small `meta.json` (step, loss history) for humans and tests. It is
written into a temp folder beside it and swapped in by rename, so a kill during the write leaves the previous
checkpoint intact.

Resume is explicit (`resume=true`, rerun in the same `hydra.run.dir`) or automatic for a job that SLURM /
submitit started again after a preemption or timeout: hydra-submitit-launcher resubmits the same job into the
same run dir, so that job must pick up its own checkpoint by itself.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from lora_lab.config.errors import DataError, Interrupted, RunStopped
from lora_lab.training.distributed import main_run_dir
from lora_lab.training.loop import TrainState
from lora_lab.training.optimization import Optimization
from lora_lab.utils.io import atomic_directory, atomic_write_json, read_json, recover_directory

log = logging.getLogger("lora_lab")

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def has_checkpoint(run_dir: Path) -> bool:
    _recover(run_dir)
    return (checkpoint_dir(run_dir) / STATE_FILE).is_file()


def _recover(run_dir: Path) -> None:
    """A kill between the two renames of `save_checkpoint` leaves only the previous checkpoint, under its
    temporary name: put it back."""
    recover_directory(checkpoint_dir(run_dir), complete=lambda old: (old / STATE_FILE).is_file())


def is_requeued_job() -> bool:
    """True in a job that SLURM requeued (preemption, or submitit's resubmission after a timeout)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0
    except ValueError:
        return False


def is_submitit_job() -> bool:
    # Under submitit every sweep job has its own fresh run dir, so a checkpoint found there can only be
    # this job's own from an earlier attempt (a resubmission keeps the job's folder).
    return bool(os.environ.get("SUBMITIT_EXECUTOR"))


def should_resume(cfg: DictConfig, run_dir: Path) -> bool:
    if not has_checkpoint(run_dir):
        return False
    return bool(cfg.get("resume", False)) or is_requeued_job() or is_submitit_job()


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only what training changes: trainable parameters (the adapter), not the frozen base model."""
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(run_dir: Path, *, model: torch.nn.Module, method, optimization: Optimization,
                    state: TrainState) -> Path:
    """Write the checkpoint atomically (temp dir + rename); returns its folder."""
    target = checkpoint_dir(run_dir)
    payload = {
        "step": state.step,
        "train_state": asdict(state),
        "trainable": trainable_state(model),
        **optimization.state_dict(),  # "optimizer", "scheduler"
        "method": method.state_dict(),
        "rng": _rng_states(),
    }
    with atomic_directory(target) as tmp:
        torch.save(payload, tmp / STATE_FILE)
        atomic_write_json(tmp / META_FILE, {"step": state.step, "losses": list(state.losses)})
    return target


def load_checkpoint(run_dir: Path, *, model: torch.nn.Module, method, optimization: Optimization) -> TrainState:
    """Restore weights, optimizer, scheduler, method state and RNG in place; returns the saved TrainState."""
    path = checkpoint_dir(run_dir) / STATE_FILE
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        payload["trainable"], payload["train_state"]  # noqa: B018 — a dict from elsewhere is not a checkpoint
    except Exception as err:  # noqa: BLE001 — truncated zip, bad pickle, EOF: all mean "not a usable checkpoint"
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise DataError(f"{path}: not a readable checkpoint ({reason}); remove {path.parent} to start from "
                        f"step 0") from None
    params = dict(model.named_parameters())
    missing = [name for name in payload["trainable"] if name not in params]
    if missing:
        raise RuntimeError(f"checkpoint {path} does not fit the model: unknown parameters {missing[:3]}")
    from lora_lab.utils.tensor_checks import check_finite

    with torch.no_grad():
        for name, value in payload["trainable"].items():
            check_finite(value, f"{path}: parameter {name!r}")
            params[name].copy_(value.to(params[name].device))
    optimization.load_state_dict(payload)
    method.load_state_dict(payload.get("method") or {})
    _set_rng_states(payload["rng"])
    log.info("resumed from %s at step %d", path.parent, payload["step"])
    return TrainState(**payload["train_state"])


def checkpoint_meta(run_dir: Path) -> dict[str, Any] | None:
    return read_json(checkpoint_dir(run_dir) / META_FILE)


class Checkpointing:
    """The fine-tuning recipe's glue to this module: restore before training, then per step log the train
    metrics and write a checkpoint every `train.checkpoint_every` steps (0 = never)."""

    def __init__(self, ctx, model: torch.nn.Module, method, *, rank: int = 0):
        self.ctx, self.model, self.method, self.rank = ctx, model, method, rank
        self.every = int(ctx.cfg.train.get("checkpoint_every") or 0)
        self.resumed_from = 0
        self.state = TrainState()
        self.optimization: Optimization | None = None  # the run's (set by restore), for a checkpoint at an interrupt

    def restore(self, optimization: Optimization) -> TrainState:
        """The state to train from: restored (weights, `optimization`'s optimizer and schedule, method state, RNG)
        from the run's checkpoint when it resumes, else a fresh one."""
        self.optimization = optimization
        run_dir = main_run_dir(self.ctx.run_dir)  # every data-parallel rank restores rank 0's checkpoint
        if not should_resume(self.ctx.cfg, run_dir):
            if self.ctx.cfg.get("resume", False):
                log.warning("resume=true but %s has no checkpoint; starting from step 0", checkpoint_dir(run_dir))
            return self.state
        state = load_checkpoint(run_dir, model=self.model, method=self.method, optimization=optimization)
        self.resumed_from, self.state = state.step, state
        return state

    def on_step(self, state: TrainState, optimization: Optimization) -> None:
        cfg = self.ctx.cfg
        if state.step % max(int(cfg.train.log_every), 1) == 0 or state.step == cfg.train.max_steps:
            self.ctx.logger.log({"train_loss": state.losses[-1], "lr": optimization.lr}, step=state.step)
        if self.rank == 0 and self.every > 0 and state.step % self.every == 0 and state.step < cfg.train.max_steps:
            save_checkpoint(self.ctx.run_dir, model=self.model, method=self.method, optimization=optimization,
                            state=state)

    def stopped(self, stop: RunStopped) -> None:
        """The run stops early: keep its loss history; at an interrupt with checkpointing on, checkpoint the
        last whole step (unless that step's checkpoint is already on disk) so `resume=true` continues it."""
        self.summary(self.state.losses)
        if not isinstance(stop, Interrupted) or self.rank != 0 or self.every <= 0:
            return
        saved = (checkpoint_meta(self.ctx.run_dir) or {}).get("step")
        if self.optimization is not None and self.state.step > 0 and saved != self.state.step:
            save_checkpoint(self.ctx.run_dir, model=self.model, method=self.method, optimization=self.optimization,
                            state=self.state)
        if has_checkpoint(self.ctx.run_dir):
            stop.fields["checkpoint"] = str(checkpoint_dir(self.ctx.run_dir))
            stop.fields["checkpoint_step"] = (checkpoint_meta(self.ctx.run_dir) or {}).get("step")

    def summary(self, losses: list[float]) -> dict[str, Any]:
        """Metrics about resuming; the full loss history goes to `train_losses.json` beside metrics.json."""
        if self.rank == 0:
            atomic_write_json(Path(self.ctx.run_dir) / "train_losses.json",
                              {"resumed_from_step": self.resumed_from, "losses": list(losses)})
        return {"resumed_from_step": self.resumed_from}
