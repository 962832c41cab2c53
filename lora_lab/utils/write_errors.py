"""Recognising a failed write however the writing library reports it.

A full disk, a read-only folder or an I/O error reaches the project in several shapes: Python's `OSError`, the
`SafetensorError` of safetensors' Rust writer (the OS error is only in its message), `shutil.Error` of a
copytree (a list of per-file reasons), torch's C++ stream writer (a `RuntimeError`), SQLite through SQLAlchemy (`OperationalError`, the study of a search). Each recogniser below
reads one shape and returns the OS reason (and the path when the error names one); `as_storage_error` tries
them on the error and on every error it was raised from, so a write failure anywhere is the project's one
`disk error` line, not a library's traceback. A new writer with its own error shape is one more recogniser.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

# errno values that mean "this path cannot be written here", whatever wrote it
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EFBIG,
                         errno.EIO, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST})


@dataclass(frozen=True)
class WriteFailure:
    reason: str             # what the OS said, e.g. "No space left on device"
    path: str | None = None  # the file the error names, if it names one


Recogniser = Callable[[BaseException], WriteFailure | None]
RECOGNISERS: dict[str, Recogniser] = {}


def recogniser(name: str) -> Callable[[Recogniser], Recogniser]:
    def register(fn: Recogniser) -> Recogniser:
        RECOGNISERS[name] = fn
        return fn
    return register


@recogniser("oserror")
def _os_error(err: BaseException) -> WriteFailure | None:
    if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
        return WriteFailure(err.strerror or os.strerror(err.errno),
                            None if err.filename is None else str(err.filename))
    return None


_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)")
_PATH_IN_TEXT = re.compile(r'at path "([^"]+)"')


@recogniser("safetensors")
def _safetensors(err: BaseException) -> WriteFailure | None:
    """`SafetensorError: Error while serializing: I/O error: No space left on device (os error 28) at path ...`"""
    if type(err).__name__ != "SafetensorError":
        return None
    found = _OS_ERROR_IN_TEXT.search(str(err))
    if not found or int(found.group(1)) not in DISK_ERRNOS:
        return None
    path = _PATH_IN_TEXT.search(str(err))
    return WriteFailure(os.strerror(int(found.group(1))), path.group(1) if path else None)


_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\] ([^'\"]+)")


@recogniser("shutil")
def _shutil_copytree(err: BaseException) -> WriteFailure | None:
    """`shutil.Error([(src, dst, "[Errno 28] No space left on device"), ...])` from copytree: the first copy that
    failed for a disk reason."""
    import shutil

    if not isinstance(err, shutil.Error) or not err.args or not isinstance(err.args[0], list):
        return None
    for entry in err.args[0]:
        if isinstance(entry, tuple | list) and len(entry) == 3:
            found = _ERRNO_IN_TEXT.search(str(entry[2]))
            if found and int(found.group(1)) in DISK_ERRNOS:
                return WriteFailure(found.group(2).strip(), str(entry[1]))
    return None


_TORCH_WRITE_FAILURES = ("PytorchStreamWriter failed writing file", "file write failed", "cannot be opened")


@recogniser("torch")
def _torch_writer(err: BaseException) -> WriteFailure | None:
    """torch.save's C++ writer: `[enforce fail at inline_container.cc:...] . PytorchStreamWriter failed writing
    file data/0: file write failed`, or `File <path> cannot be opened.`"""
    text = str(err)
    if not isinstance(err, RuntimeError) or not any(marker in text for marker in _TORCH_WRITE_FAILURES):
        return None
    opened = re.match(r"File (.+) cannot be opened\.", text)
    if opened:
        return WriteFailure("cannot be opened for writing", opened.group(1))
    return WriteFailure("write failed (disk full or I/O error)")


_SQLITE_WRITE_FAILURES = ("database or disk is full", "disk I/O error", "attempt to write a readonly database",
                          "unable to open database file")


@recogniser("sqlite")
def _sqlite(err: BaseException) -> WriteFailure | None:
    """sqlite3's (and SQLAlchemy's wrapper of it) `OperationalError: database or disk is full`, ..."""
    if type(err).__name__ != "OperationalError":
        return None
    text = str(err)
    return next((WriteFailure(marker) for marker in _SQLITE_WRITE_FAILURES if marker in text), None)


def write_failure(err: BaseException) -> WriteFailure | None:
    """The write failure behind `err` (itself, or any error it was raised from or while handling), or None."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for recognise in RECOGNISERS.values():
            found = recognise(current)
            if found is not None:
                return found
        current = current.__cause__ or current.__context__
    return None
