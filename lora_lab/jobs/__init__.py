"""Job recipes keyed by the method's kind, and `run_job`, which wraps any recipe with the run contract:
validate first, measure time and memory per job, always leave a `metrics.json` with a `status`."""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError, DataError, RunStopped
from lora_lab.config.user_keys import UserKeys
from lora_lab.config.validate import check_machine, validate_config
from lora_lab.jobs.attempt import Attempt, recorded_attempt
from lora_lab.jobs.context import JobContext
from lora_lab.jobs.ignored_keys import ignored_keys, warning_line
from lora_lab.jobs.recipe import Recipe
from lora_lab.jobs.registry import JOBS
from lora_lab.jobs.run_dir import claim, held_by_parent
from lora_lab.loggers import build_logger
from lora_lab.training.distributed import launched_rank, prepare
from lora_lab.utils.device import select_device
from lora_lab.utils.interrupts import interrupts_as_status
from lora_lab.utils.io import as_storage_error, atomic_write_json
from lora_lab.utils.memory import PeakMemory

log = logging.getLogger("lora_lab")

METRICS_FILE = "metrics.json"


def _register_recipes() -> None:
    # lazy: cli.py and rank_entry.py import this package before quiet_known_noise(); the recipes import peft
    from lora_lab.jobs import evaluate, finetune, meta  # noqa: F401


def recipe_of(cfg: DictConfig) -> Recipe:
    """The declaration of the recipe that runs `cfg` (jobs/recipe.py), picked by its method's kind."""
    from lora_lab.methods import METHODS  # lazy: imports peft, which must follow quiet_known_noise()

    _register_recipes()
    return JOBS.get(METHODS.get(cfg.method.name).kind).recipe


def run_job(raw_cfg: DictConfig, run_dir: Path, user_keys: UserKeys | None = None) -> dict[str, Any]:
    """Run one job in `run_dir`; returns its metrics (status ok, or skipped). The job holds the run dir (one
    writer, one config: `jobs/run_dir.py`); SIGINT/SIGTERM end it as `status: interrupted`. `user_keys`: the
    keys the user set (the CLI passes Hydra's); one the recipe does not read is refused or recorded
    (jobs/ignored_keys.py)."""
    _register_recipes()
    run_dir = Path(run_dir)
    # in a multirun every exit, the claim's refusals included, leaves this launch's attempt record (jobs/attempt.py)
    with interrupts_as_status(), recorded_attempt(run_dir, not held_by_parent(run_dir)) as attempt, \
            claim(raw_cfg, run_dir) as finished:
        if finished is not None:  # a requeued or repeated finished job of the same config is not redone
            log.info("%s already finished (status ok, same config); skipping", run_dir)
            attempt.skipped("already finished (status ok, same config)")
            return {**finished, "skipped": True}
        return _run_claimed(raw_cfg, run_dir, attempt, user_keys=user_keys)


def check_before_launch(raw_cfg: DictConfig) -> DictConfig:
    """Every config rule, and what this machine can honour (CUDA, GPU and core counts), before any rank is
    spawned or model loaded."""
    import torch

    cfg = validate_config(raw_cfg)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    check_machine(cfg, cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
                  cpu_cores=cores, launched=launched_rank() is not None)
    return cfg


def _run_claimed(raw_cfg: DictConfig, run_dir: Path, attempt: Attempt, *, user_keys: UserKeys | None = None
                 ) -> dict[str, Any]:
    from lora_lab.methods import METHODS  # lazy: imports peft, which must follow quiet_known_noise()

    metrics_path = run_dir / METRICS_FILE
    started = time.perf_counter()
    identity: dict[str, Any] = {key: _name_of(raw_cfg, key) for key in ("method", "task", "model")}
    try:
        checked = check_before_launch(raw_cfg)
        ignored = ignored_keys(checked, raw_cfg, user_keys, recipe_of(checked))  # a single run's: refused here
    except ConfigError as err:
        atomic_write_json(metrics_path, {**identity, "status": "failed", "error_type": type(err).__name__,
                                         "error": str(err), "job_seconds": time.perf_counter() - started})
        raise
    attempt.started()  # from here a config error is the job's failure, not a refusal to run it
    # hardware.num_processes > 1: relaunch as N ranks (and return rank 0's metrics), or join the process group
    # as one rank; ranks > 0 run without eval/logger in a scratch dir (training/distributed.py).
    launch = prepare(raw_cfg, run_dir)
    if launch.metrics is not None:
        if ignored:  # rank 0 ran without the user's keys: this process completes its record
            launch.metrics["ignored_keys"] = [i.key for i in ignored]
            atomic_write_json(metrics_path, launch.metrics)
        return launch.metrics
    relaunched = launch.cfg is not raw_cfg  # a rank's config differs from what was checked: validate it again
    raw_cfg, run_dir, metrics_path = launch.cfg, launch.run_dir, launch.run_dir / METRICS_FILE

    logger, exit_code = None, 0
    try:
        cfg = validate_config(raw_cfg) if relaunched else checked
        identity = {"method": cfg.method.name, "task": cfg.task.name, "model": cfg.model.name,
                    "kind": METHODS.get(cfg.method.name).kind}
        if ignored:  # a multirun's key meant for other jobs, a preset's key for other recipes or tasks
            log.warning(warning_line(ignored))
            identity["ignored_keys"] = [i.key for i in ignored]
        device = select_device(cfg.hardware)
        logger = build_logger(cfg, run_dir)
        ctx = JobContext(cfg=cfg, run_dir=run_dir, device=device, logger=logger)
        with PeakMemory() as memory:
            metrics = JOBS.get(identity["kind"])(ctx)
        metrics = {**identity, **metrics, **memory.metrics(), "status": "ok",
                   "job_seconds": time.perf_counter() - started, "device": str(device)}
        metrics.update(primary_score(cfg, metrics, recipe_of(cfg)))
        logger.summary(metrics)
    except RunStopped as stop:  # diverged or interrupted: not a bug; the record says what, where and why
        metrics = {**identity, **stop.record(), "job_seconds": time.perf_counter() - started}
        atomic_write_json(metrics_path, metrics)
        exit_code = stop.exit_code
        if logger is not None:
            logger.summary({key: metrics[key] for key in ("status", "error_type", "error")})
        raise
    except Exception as caught:  # noqa: BLE001 — every failure must leave a record, then propagate
        err = as_storage_error(caught) or caught  # a write failure anywhere: one line naming the path
        metrics = {**identity, "status": "failed", "error_type": type(err).__name__, "error": str(err),
                   "job_seconds": time.perf_counter() - started}
        atomic_write_json(metrics_path, metrics)
        exit_code = 1
        if logger is not None:
            logger.summary({"status": "failed", "error_type": metrics["error_type"], "error": metrics["error"]})
        if not isinstance(err, ConfigError | DataError):
            (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        if err is not caught:
            raise err from caught
        raise
    finally:
        if logger is not None:
            logger.finish(exit_code)
    atomic_write_json(metrics_path, metrics)
    return metrics


def _name_of(cfg: DictConfig, key: str) -> Any:
    node = cfg.get(key)
    return node.get("name") if isinstance(node, DictConfig) else None


def primary_score(cfg: DictConfig, metrics: dict[str, Any], recipe: Recipe) -> dict[str, Any]:
    """One comparable number per job: the task's primary metric of the stage that is the recipe's result (after
    training; the evaluation of method=none; the generated adapter of meta), and that stage's name. Never another
    stage's number under its name: a result stage that was not measured is `score: null` with `score_note`."""
    from lora_lab.tasks import TASKS  # lazy: imports huggingface_hub, which must follow quiet_known_noise()

    name = metrics.get("primary_metric") or TASKS.get(cfg.task.name).primary_metric
    stage = recipe.result_stage
    score = {"primary_metric": name, "score_stage": stage, "score": metrics.get(f"{stage}_{name}")}
    if f"{stage}_{name}" not in metrics:
        score["score_note"] = recipe.unmeasured(cfg)
    return score
