"""Hydra callbacks of the `lora-lab` app (registered under `hydra.callbacks` in conf/config.yaml).

- `OutputCheck`: before Hydra creates the run or sweep dir, check that the output folder can be written, so a
  read-only or full disk is one line naming the path instead of a traceback from Hydra's own mkdir.
- `TaskKeyCheck`: before a multirun starts, refuse a `task.<key>` that no task has (one line, exit 2).
- `SweepOutcome`: after every job of a multirun has ended (basic, local or SLURM launcher: the callback runs in
  the submitting process), count the jobs' statuses from their metrics.json, print one line, and exit 1 when
  any job did not finish ok, so a script or CI step never takes a half-failed sweep for a good one.

Both end the process with `sys.exit`: Hydra turns any other exception raised in a callback into a warning.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import check_task_keys_exist
from lora_lab.report.collect import collect, expected_jobs

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


def sweep_outcome(sweep_dir: Path) -> tuple[Counter, list[str]]:
    """Status counts of the sweep's jobs (a job without metrics.json counts as `missing`) and one note per job
    that is not ok."""
    records = collect(sweep_dir)
    expected = len(expected_jobs(sweep_dir))
    if expected:  # a reused sweep dir may hold older jobs beyond this launch's grid
        records = [r for r in records if r.num < expected]
    counts = Counter(r.status for r in records)
    notes = [f"job {r.num} {r.status}" + (f": {str(r.metrics['error']).splitlines()[0][:200]}"
                                           if r.metrics.get("error") else "")
             for r in records if r.status != "ok"]
    return counts, notes


class TaskKeyCheck(Callback):
    """A multirun over tasks may set keys that only some tasks have (validation sets them aside for the
    others); a key that no task has is a typo: one line and exit 2 before any job starts."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_task_keys_exist(config)
        except ConfigError as err:
            print(f"{PROGRAM}: config error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)


class SweepOutcome(Callback):
    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = Path(str(config.hydra.sweep.dir))  # resolved once: `${now:}` is cached per config

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir))
        counts, notes = sweep_outcome(sweep_dir)
        total = sum(counts.values())
        tally = ", ".join([f"{counts.get('ok', 0)} ok", f"{total - counts.get('ok', 0)} failed"])
        others = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if s not in ("ok", "failed"))
        line = f"{PROGRAM}: multirun {sweep_dir}: {total} jobs, {tally}" + (f" ({others})" if others else "")
        if not notes:
            print(line, flush=True)
            return
        print(line, file=sys.stderr)
        for note in notes:
            print(f"  {note}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(1)
