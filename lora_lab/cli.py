"""The one entrypoint: `lora-lab` and `python -m lora_lab` run this Hydra app.

It stays thin on purpose: compose the config, hand it to `run_job`, print the result. All logic lives in
the recipes so that tests, the SLURM launcher and the CLI run exactly the same code.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lora_lab.config.errors import ConfigError, DataError, Interrupted, RunStopped

# bitsandbytes warns at import about optional CPU kernels it can do without; keep run logs readable.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
log = logging.getLogger("lora_lab")


def _run_token() -> str:
    """Unique per invocation (two runs started in the same second get different dirs), and inherited through
    the environment so SLURM/submitit workers resolve the same sweep dir as the submitting process."""
    return os.environ.setdefault("LORA_LAB_RUN_TOKEN", secrets.token_hex(3))


def _data_dir(subfolder: str) -> str | None:
    """`${data_dir:sst2}` → `$LORA_LAB_DATA/sst2`, or null (the task's hub id) when LORA_LAB_DATA is unset."""
    root = os.environ.get("LORA_LAB_DATA")
    return str(Path(root).expanduser() / subfolder) if root else None


def register_resolvers() -> None:
    from lora_lab.config.schema import register_schemas

    register_schemas()
    if not OmegaConf.has_resolver("run_token"):
        OmegaConf.register_new_resolver("run_token", _run_token)
    if not OmegaConf.has_resolver("data_dir"):
        OmegaConf.register_new_resolver("data_dir", _data_dir)


register_resolvers()


def report_input_error(program: str, err: ConfigError | DataError) -> None:
    """Bad config or data is the user's to fix: one line on stderr, no traceback."""
    kind = getattr(err, "kind", None) or ("config" if isinstance(err, ConfigError) else "data")
    print(f"{program}: {kind} error: {err}", file=sys.stderr, flush=True)
    log.debug("%s error: %s", kind, err)


@contextmanager
def exit_on_input_error(program: str) -> Iterator[None]:
    """For the project's other command-line tools: a ConfigError/DataError becomes one line and exit code 2."""
    try:
        yield
    except (ConfigError, DataError) as err:
        report_input_error(program, err)
        sys.exit(2)


def compose_config(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """The root config with these overrides, composed as `lora-lab` composes it (schemas and resolvers in
    place), for code that runs outside the Hydra app: benchmarks, the meta study, tests. Not validated."""
    from hydra import compose, initialize_config_dir

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def describe_stop(stop: RunStopped, run_dir: Path) -> str:
    """The reason, plus how to continue an interrupted run."""
    text = stop.reason
    if isinstance(stop, Interrupted):
        if stop.step is not None:
            text += f" after step {stop.step}"
        if stop.fields.get("checkpoint"):
            text += (f"; checkpoint at step {stop.fields.get('checkpoint_step')}: continue with resume=true "
                     f"hydra.run.dir={run_dir}")
    return f"{text} ({run_dir}/metrics.json)"


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_app(cfg: DictConfig) -> float | None:
    from lora_lab.jobs import run_job
    from lora_lab.summary import summary_table

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        metrics = run_job(cfg, run_dir)
    except (ConfigError, DataError) as err:
        report_input_error("lora-lab", err)
        if multirun:
            return None  # the failed job left its metrics.json; the sweep goes on
        sys.exit(2)
    except RunStopped as stop:  # diverged or interrupted: recorded in metrics.json; one line, its exit code
        print(f"lora-lab: {stop.status}: {describe_stop(stop, run_dir)}", file=sys.stderr, flush=True)
        if multirun and not isinstance(stop, Interrupted):
            return None  # a diverged job is one failed job; an interrupt stops the sweep
        sys.exit(stop.exit_code)
    except Exception:
        if multirun:
            log.exception("job failed; see %s/metrics.json", run_dir)
            return None
        raise
    if cfg.get("print_summary", True):
        print(f"\nlora-lab run: {run_dir}\n{summary_table(metrics)}", flush=True)
    score = metrics.get("score")
    return float(score) if isinstance(score, int | float) else None


def main() -> None:
    hydra_app()


if __name__ == "__main__":
    main()
