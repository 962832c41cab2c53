"""One exception type for every bad-input case, rendered as one line naming key, value and choices."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import Any

from lora_lab.utils.write_errors import write_failure

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
    return as_storage_error(err)


def as_storage_error(err: BaseException, path: str | PathLike | None = None,
                     staged: tuple[Path, Path] | None = None) -> StorageError | None:
    """The StorageError for a failed write, however the writer raised it (`utils/write_errors.py`: OSError,
    safetensors, torch, SQLite), or None for any other error. `path`: the output being written, named when the
    error itself names no file (or only a temp file inside the `staged` stand-in)."""
    if isinstance(err, StorageError):
        return err
    found = write_failure(err)
    if found is None:
        return None
    where = written_path(found.path, path, staged)
    if where is not None and path is not None and Path(where).name.startswith(".tmp"):
        where = str(path)  # a writer's own temp file (safetensors writes `.tmpXXXX`, then renames)
    return StorageError(f"{where}: {found.reason}" if where else f"cannot write: {found.reason}")


def written_path(named: str | None, path: str | PathLike | None,
                 staged: tuple[Path, Path] | None = None) -> str | None:
    """The path a failed write is reported under: the file the error names, else the output being written; a
    file inside a temp stand-in (`staged` = (temp path, final path)) is named by where it was going."""
    where = named if named is not None else (None if path is None else str(path))
    if where is not None and staged is not None and where.startswith(str(staged[0])):
        where = str(staged[1]) + where[len(str(staged[0])):]
    return where


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
