"""Each attempt at a job of a multirun records what it came to, at every exit: `<job dir>/.attempts/<launch>.json`.

`metrics.json` belongs to the result and survives a rerun that was refused, skipped or killed, so the multirun's
accounting cannot tell from it what this launch did. The attempt record can: written `running` before anything
else (so a kill leaves that), then `ok`, `skipped`, `refused` (the run dir held another config or another writer,
or the config failed its checks: the job never ran), `failed` or `interrupted` with a one-line reason — including refusals raised by the run dir's
claim before `metrics.json` is touched. One file per launch, so two launches into the same dir never overwrite each
other's record. Outside a multirun (no launch id in the environment) nothing is written.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lora_lab.config.errors import ConfigError, RunStopped
from lora_lab.report.job_result import LAUNCH_ENV, attempt_path
from lora_lab.utils.io import atomic_write_json

log = logging.getLogger("lora_lab")

REASON_CHARS = 400


def outcome_of(err: BaseException, working: bool) -> str:
    """A config error before the work starts (the run dir's claim, validation, what the machine can honour) is a
    refusal: the job never ran. Once `working`, any error is a failure (e.g. a hub dataset that cannot be
    reached); a stop says its own status."""
    if isinstance(err, ConfigError) and not working:
        return "refused"
    if isinstance(err, RunStopped):
        return err.status
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    return "failed"


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


class Attempt:
    def __init__(self, run_dir: Path | None, launch: str | None) -> None:
        self.run_dir, self.launch = run_dir, launch
        self.outcome, self.reason, self.working = "ok", None, False

    def skipped(self, reason: str) -> None:
        self.outcome, self.reason = "skipped", reason

    def started(self) -> None:
        """The config passed every check: from here on the job is running, and an error is a failure."""
        self.working = True

    def write(self, outcome: str, reason: str | None = None) -> None:
        """Best effort: a record that cannot be written is counted as `missing`, never as a success."""
        if self.run_dir is None or self.launch is None:
            return
        record = {"launch": self.launch, "outcome": outcome, "reason": reason, "pid": os.getpid(),
                  "host": socket.gethostname(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            atomic_write_json(attempt_path(self.run_dir, self.launch), record)
        except Exception as err:  # noqa: BLE001 — the job's own outcome matters more than its record
            log.warning("could not record this attempt's outcome (%s): %s", outcome, err)


@contextmanager
def recorded_attempt(run_dir: Path, recording: bool = True) -> Iterator[Attempt]:
    """Record `running`, then how the body ended: `ok` (or what it set, e.g. `skipped`), or the outcome of the
    exception that left it. `recording=False` for a rank of a relaunch, whose parent records the attempt."""
    launch = os.environ.get(LAUNCH_ENV) if recording else None
    attempt = Attempt(Path(run_dir), launch) if launch else Attempt(None, None)
    attempt.write("running")
    try:
        yield attempt
    except BaseException as err:
        attempt.write(outcome_of(err, attempt.working), one_line(err))
        raise
    attempt.write(attempt.outcome, attempt.reason)
