"""One exception type for every bad-input case, rendered as one line naming key, value and choices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
