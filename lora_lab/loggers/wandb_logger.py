"""`logger=wandb`: one Weights & Biases run per job.

Why each choice:
- `reinit="create_new"` + `finish()` per job: the basic launcher runs every job of a sweep in one process, and
  each job must become its own run (never a continuation of the previous job's run).
- `dir=<run_dir>`: offline runs (`WANDB_MODE=offline`) and W&B's local files stay inside the job's run dir.
- group = the sweep dir name in a multirun (all jobs of one sweep side by side), name = the job's overrides.
- config = a plain container (`OmegaConf.to_container`), with secret-looking keys dropped: the API key comes
  from `wandb login` / `WANDB_API_KEY` and must never end up in a logged config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lora_lab.loggers.registry import LOGGERS

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential)", re.IGNORECASE)


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain dicts/lists, without any key that looks like a secret."""
    return _scrub(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))


def _scrub(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _scrub(v) for k, v in node.items() if not SECRET_KEY.search(str(k))}
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    return node


def _hydra_names(run_dir: Path) -> tuple[str | None, str]:
    """(sweep group or None, job name) from Hydra's runtime config when there is one."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except (ImportError, ValueError):
        return None, run_dir.name
    group = Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None
    name = hydra_cfg.job.get("override_dirname") or run_dir.name
    if group is not None and name != run_dir.name:
        name = f"{run_dir.name}:{name}"  # job number first: unique inside the sweep even for repeated overrides
    return group, name


def _plain_metrics(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool) or v is None}


@LOGGERS.register("wandb")
class WandbLogger:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        import wandb

        lcfg = cfg.logger
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        group, name = _hydra_names(run_dir)
        self._step = 0
        self.run = wandb.init(
            project=lcfg.project,
            entity=lcfg.entity,
            group=lcfg.group or group,
            name=name,
            tags=list(lcfg.tags or []),
            config=plain_config(cfg),
            dir=str(run_dir),
            mode=lcfg.mode,
            job_type=str(cfg.method.name),
            reinit="create_new",
        )

    def log(self, metrics: dict, step: int | None = None) -> None:
        # W&B steps must not decrease; logs without a step (evaluations) go to the latest step.
        step = self._step if step is None else max(int(step), self._step)
        self.run.log(_plain_metrics(metrics), step=step)
        self._step = step

    def summary(self, metrics: dict) -> None:
        self.run.summary.update(_plain_metrics(metrics))

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)  # non-zero: the run shows as failed, not finished
            self.run = None
