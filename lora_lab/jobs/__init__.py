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
from lora_lab.config.validate import check_machine, other_task_keys, validate_config
from lora_lab.jobs.context import JobContext
from lora_lab.jobs.registry import JOBS
from lora_lab.jobs.run_dir import claim
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


def run_job(raw_cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run one job in `run_dir`; returns its metrics (status ok, or skipped). The job holds the run dir (one
    writer, one config: `jobs/run_dir.py`); SIGINT/SIGTERM end it as `status: interrupted`."""
    _register_recipes()
    run_dir = Path(run_dir)
    with interrupts_as_status(), claim(raw_cfg, run_dir) as finished:
        if finished is not None:  # a requeued or repeated finished job of the same config is not redone
            log.info("%s already finished (status ok, same config); skipping", run_dir)
            return {**finished, "skipped": True}
        return _run_claimed(raw_cfg, run_dir)


def check_before_launch(raw_cfg: DictConfig) -> DictConfig:
    """Every config rule, and what this machine can honour (CUDA, GPU and core counts), before any rank is
    spawned or model loaded."""
    import torch

    cfg = validate_config(raw_cfg)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    check_machine(cfg, cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
                  cpu_cores=cores, launched=launched_rank() is not None)
    return cfg


def _run_claimed(raw_cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    from lora_lab.methods import METHODS  # lazy: imports peft, which must follow quiet_known_noise()

    metrics_path = run_dir / METRICS_FILE
    started = time.perf_counter()
    identity: dict[str, Any] = {key: _name_of(raw_cfg, key) for key in ("method", "task", "model")}
    try:
        checked = check_before_launch(raw_cfg)
    except ConfigError as err:
        atomic_write_json(metrics_path, {**identity, "status": "failed", "error_type": type(err).__name__,
                                         "error": str(err), "job_seconds": time.perf_counter() - started})
        raise
    # hardware.num_processes > 1: relaunch as N ranks (and return rank 0's metrics), or join the process group
    # as one rank; ranks > 0 run without eval/logger in a scratch dir (training/distributed.py).
    launch = prepare(raw_cfg, run_dir)
    if launch.metrics is not None:
        return launch.metrics
    relaunched = launch.cfg is not raw_cfg  # a rank's config differs from what was checked: validate it again
    raw_cfg, run_dir, metrics_path = launch.cfg, launch.run_dir, launch.run_dir / METRICS_FILE

    logger, exit_code = None, 0
    try:
        cfg = validate_config(raw_cfg) if relaunched else checked
        identity = {"method": cfg.method.name, "task": cfg.task.name, "model": cfg.model.name,
                    "kind": METHODS.get(cfg.method.name).kind}
        aside = other_task_keys(raw_cfg)  # set by a sweep over tasks for the tasks that have them
        if aside:
            log.warning("task=%s has no %s: ignored for this job", cfg.task.name, ", ".join(aside))
            identity["ignored_task_keys"] = ",".join(aside)
        device = select_device(cfg.hardware)
        logger = build_logger(cfg, run_dir)
        ctx = JobContext(cfg=cfg, run_dir=run_dir, device=device, logger=logger)
        with PeakMemory() as memory:
            metrics = JOBS.get(identity["kind"])(ctx)
        metrics = {**identity, **metrics, **memory.metrics(), "status": "ok",
                   "job_seconds": time.perf_counter() - started, "device": str(device)}
        metrics.update(primary_score(cfg, metrics))
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


def primary_score(cfg: DictConfig, metrics: dict[str, Any]) -> dict[str, Any]:
    """One comparable number per job: the task's primary metric after training (or of the evaluation)."""
    from lora_lab.tasks import TASKS  # lazy: imports huggingface_hub, which must follow quiet_known_noise()

    name = metrics.get("primary_metric") or TASKS.get(cfg.task.name).primary_metric
    for stage in ("after", "eval", "before"):
        if f"{stage}_{name}" in metrics:
            return {"primary_metric": name, "score": metrics[f"{stage}_{name}"]}
    return {"primary_metric": name}
