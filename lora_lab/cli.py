"""The one entrypoint: `lora-lab` and `python -m lora_lab` run this Hydra app.

It stays thin on purpose: compose the config, hand it to `run_job`, print the result. All logic lives in
the recipes so that tests, the SLURM launcher and the CLI run exactly the same code.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lora_lab.config.compose import CONF_DIR
from lora_lab.config.errors import (
    ConfigError,
    Interrupted,
    RunStopped,
    as_input_error,
    report_input_error,
)
from lora_lab.config.precheck import check_overrides
from lora_lab.config.resolvers import register_resolvers
from lora_lab.config.user_keys import UserKeys
from lora_lab.jobs import run_job
from lora_lab.run_callbacks import launch_runs_here
from lora_lab.summary import summary_table
from lora_lab.utils.quiet import quiet_known_noise

log = logging.getLogger("lora_lab")

quiet_known_noise()  # before register_resolvers, which imports the methods and with them peft and bitsandbytes
register_resolvers()


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
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        metrics = run_job(cfg, run_dir, UserKeys.from_hydra(hydra_cfg))  # keys the recipe must read
    except RunStopped as stop:  # diverged or interrupted: recorded in metrics.json; one line, its exit code
        print(f"lora-lab: {stop.status}: {describe_stop(stop, run_dir)}", file=sys.stderr, flush=True)
        if multirun and not (isinstance(stop, Interrupted) and launch_runs_here()):
            return None  # one diverged or interrupted job of the sweep; its attempt record says which
        sys.exit(stop.exit_code)  # a run, or an interrupt of the sweep's own process (basic launcher): stop
    except Exception as caught:
        err = as_input_error(caught)  # bad config or data, or a failed write anywhere (claiming the run dir too)
        if err is None:  # a bug: its traceback is the report
            if multirun:
                log.exception("job failed; see %s/metrics.json", run_dir)
                return None
            raise
        report_input_error("lora-lab", err)
        if multirun:
            return None  # the failed job left its metrics.json; the sweep goes on
        sys.exit(2)
    if cfg.get("print_summary", True):
        print(f"\nlora-lab run: {run_dir}\n{summary_table(metrics)}", flush=True)
    score = metrics.get("score")
    return float(score) if isinstance(score, int | float) else None


def main() -> None:
    try:  # an override Hydra cannot compose: one line and exit 2, not Hydra's multi-line report
        check_overrides(sys.argv[1:])
    except ConfigError as err:
        report_input_error("lora-lab", err)
        sys.exit(2)
    run_reporting_write_failures(hydra_app)


# submitit's errors for a job that died without returning (killed, out of memory, node failure)
LAUNCHER_JOB_ERRORS = ("UncompletedJobError", "FailedJobError")


def run_reporting_write_failures(app) -> None:
    """Run the Hydra app so that a failed write in Hydra's own files (`.hydra/*.yaml`, the sweep's folders) is
    the project's one `disk error` line like any other: Hydra is asked to pass its errors on (HYDRA_FULL_ERROR)
    instead of printing them; its compact errors are still printed as Hydra would."""
    from hydra.errors import CompactHydraException

    asked = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except Exception as err:  # noqa: BLE001 — mapped, or re-raised untouched
        mapped = as_input_error(err)
        if mapped is not None:
            report_input_error("lora-lab", mapped)
            sys.exit(2)
        if asked != "1" and isinstance(err, CompactHydraException):
            print(err, file=sys.stderr, flush=True)
            sys.exit(1)
        if type(err).__name__ in LAUNCHER_JOB_ERRORS:  # a job of the sweep died without a result (killed, OOM):
            # the multirun summary (printed on exit) names it; one line here, not the launcher's traceback
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            print(f"lora-lab: multirun stopped: a job ended without a result ({first[:300]})", file=sys.stderr,
                  flush=True)
            sys.exit(1)
        raise
    finally:
        if asked is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = asked


if __name__ == "__main__":
    main()
