"""Experiment trackers behind one small interface: log(metrics, step), summary(metrics), finish()."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lora_lab.loggers import wandb_logger  # noqa: F401  (registers `wandb`; wandb itself loads in WandbLogger)
from lora_lab.loggers.registry import LOGGERS


@LOGGERS.register("none")
class NoLogger:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        pass

    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        """`exit_code` != 0 marks the run failed on the dashboard."""


def build_logger(cfg: DictConfig, run_dir: Path):
    return LOGGERS.get(cfg.logger.name)(cfg, run_dir)
