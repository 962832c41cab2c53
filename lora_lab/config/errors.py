"""One exception type for every bad-input case, rendered as one line naming key, value and choices."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("lora_lab")


class ConfigError(ValueError):
    def __init__(self, key: str, value: Any, problem: str, choices: Sequence[Any] | None = None):
        self.key, self.value, self.problem = key, value, problem
        self.choices = list(choices) if choices is not None else None
        message = f"{key}={value!r}: {problem}"
        if self.choices is not None:
            message += f" (choices: {', '.join(map(str, self.choices))})"
        super().__init__(message)


class DataError(ValueError):
    """Bad data on disk: the message names the file, the line and the field."""


class StorageError(DataError):
    """A file or folder the run must write could not be written (read-only, full disk, no permission): one line
    naming the path, handled like bad data so no traceback hides which path it was."""

    kind = "disk"


class RunStopped(BaseException):
    """A job that ended before its result for a reason that is not a bug (divergence, an interrupt).

    `run_job` records `status`, the step and the reason in metrics.json; the CLI prints one line and exits with
    `exit_code`. A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """

    status = "failed"
    exit_code = 1

    def __init__(self, reason: str, *, step: int | None = None, **fields: Any):
        self.reason, self.step, self.fields = reason, step, fields
        super().__init__(reason)

    def record(self) -> dict[str, Any]:
        """The metrics.json fields of this outcome."""
        return {"status": self.status, "error_type": type(self).__name__, "error": self.reason, "step": self.step,
                **self.fields}


class Diverged(RunStopped):
    """A non-finite loss, gradient or trained weight: the run failed and its adapter is not the result."""


class Interrupted(RunStopped):
    """SIGINT/SIGTERM: `status: interrupted`, exit 128 + the signal number (130, 143)."""

    status = "interrupted"

    def __init__(self, signum: int, reason: str | None = None, **fields: Any):
        import signal

        self.signum = int(signum)
        self.exit_code = 128 + self.signum
        name = signal.Signals(self.signum).name
        super().__init__(reason or f"interrupted by {name}", signal=name, **fields)


def report_input_error(program: str, err: ConfigError | DataError) -> None:
    """Bad config or data is the user's to fix: one line on stderr, no traceback."""
    kind = getattr(err, "kind", None) or ("config" if isinstance(err, ConfigError) else "data")
    print(f"{program}: {kind} error: {err}", file=sys.stderr, flush=True)
    log.debug("%s error: %s", kind, err)


def as_input_error(err: BaseException) -> ConfigError | DataError | None:
    """`err` as the user's to fix: itself when it is a ConfigError/DataError, a StorageError when it is a failed
    write in any library's shape (utils/write_errors.py), else None (a bug: its traceback is the report)."""
    if isinstance(err, ConfigError | DataError):
        return err
    from lora_lab.utils.io import as_storage_error  # lazy: utils.io imports this module

    return as_storage_error(err)


@contextmanager
def exit_on_input_error(program: str) -> Iterator[None]:
    """For the project's command-line tools: bad config or data, and a failed write however the writing library
    raised it, become one line and exit code 2."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 — mapped or re-raised untouched
        mapped = as_input_error(err)
        if mapped is None:
            raise
        report_input_error(program, mapped)
        sys.exit(2)
