"""Hydra callbacks of the `lora-lab` app (registered under `hydra.callbacks` in conf/config.yaml).

- `OutputCheck`: before Hydra creates the run or sweep dir, check that the output folder can be written, so a
  read-only or full disk is one line naming the path instead of a traceback from Hydra's own mkdir.
- `TaskKeyCheck`: before a multirun starts, refuse a `task.<key>` that no task has (one line, exit 2).
- `SweepOutcome`: after every job of a multirun has ended (basic, local or SLURM launcher: the callback runs in
  the submitting process), count each job as what it was in this launch, from the attempt records its jobs wrote
  (not from metrics.json, which an earlier launch may have left), print one line, and exit 1 when any job was
  refused, failed, interrupted or missing, so a script or CI step never takes a half-done sweep for a good one.

Both end the process with `sys.exit`: Hydra turns any other exception raised in a callback into a warning.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import check_task_keys_exist
from lora_lab.report.job_result import LAUNCH_ENV
from lora_lab.report.launch_outcome import launch_outcome

PROGRAM = "lora-lab"
MIN_FREE_BYTES = 1 << 20  # less than this left on the output disk: not even metrics and logs would fit


def output_problem(folder: Path) -> str | None:
    """Why nothing could be written under `folder` (checked at its nearest existing parent), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".lora-lab-write-check-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        return f"cannot write in {existing} ({err.strerror or err})"
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        return f"no space left on the disk of {existing} ({free} bytes free)"
    return None


def _check_output(folder: str) -> None:
    problem = output_problem(Path(folder))
    if problem is not None:
        print(f"{PROGRAM}: disk error: {folder}: {problem}", file=sys.stderr, flush=True)
        sys.exit(2)


class OutputCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output(str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output(str(config.hydra.sweep.dir))


class TaskKeyCheck(Callback):
    """A multirun over tasks may set keys that only some tasks have (validation sets them aside for the
    others); a key that no task has is a typo: one line and exit 2 before any job starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_task_keys_exist(config)
        except ConfigError as err:
            print(f"{PROGRAM}: config error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)


_OPEN: list[SweepOutcome] = []  # the launch this process is running, until its outcome is printed


def new_launch_id() -> str:
    """Unique per launch, also across reruns into the same sweep dir and across hosts; safe as a file name."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"


class SweepOutcome(Callback):
    """Count every job of this launch as what it was in this launch (report/launch_outcome.py), print one line
    and a line per job that did not end ok or skipped, and exit 1 when there is any. The launch id goes to the
    jobs through the environment, which the basic launcher shares and the local and SLURM launchers pass on."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.launch: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))  # resolved once: `${now:}` is cached per config
        self.launch = os.environ[LAUNCH_ENV] = new_launch_id()
        if not _OPEN:
            atexit.register(report_open_launch)
        _OPEN[:] = [self]

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        if not self.report():
            sys.exit(1)

    def report(self, ended_early: bool = False) -> bool:
        """Print what this launch did; True when every job ended ok or skipped."""
        _OPEN[:] = [open_ for open_ in _OPEN if open_ is not self]
        if self.sweep_dir is None or self.launch is None or not self.sweep_dir.is_dir():
            return True
        found = launch_outcome(self.sweep_dir, self.launch)
        if ended_early and (found.fine or not found.reached):
            return False  # the error that ended it was printed and says it all: no job of this launch to name
        fine = found.fine and not ended_early
        stream = sys.stdout if fine else sys.stderr
        print(f"{PROGRAM}: multirun {self.sweep_dir}{' ended early' if ended_early else ''}: {found.tally()}",
              file=stream)
        for note in found.notes():
            print(f"  {note}", file=stream)
        stream.flush()
        return fine


def launch_runs_here() -> bool:
    """True in the process that runs the multirun (its jobs too, with the basic launcher); False in a job process
    of the local or SLURM launcher."""
    return bool(_OPEN)


def report_open_launch() -> None:
    """A multirun cut short (an interrupt of the basic launcher's process, a launcher that raised on a killed job)
    never reaches `on_multirun_end`, and Hydra has no callback for that: this runs at exit instead, so the jobs
    that did not end well are still named; the exit code stays the one already on its way."""
    for open_ in list(_OPEN):
        open_.report(ended_early=True)
