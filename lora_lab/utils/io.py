"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every writer here also (a) creates files and folders with the permissions a plain `open`/`mkdir` would give
under the process umask (tempfile makes them 0600/0700, which a team sharing a results folder cannot read),
and (b) turns an OS write failure (read-only folder, full disk, quota) into one StorageError naming the path.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lora_lab.config.errors import StorageError, as_storage_error, written_path

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (`/proc/self/status`)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """What `open(..., "w")` (0666) or `mkdir` (0777) would create under the umask: 0644 / 0755 by default."""
    return (0o777 if directory else 0o666) & ~current_umask()


def storage_error(err: OSError, path: str | os.PathLike | None = None, doing: str = "cannot write",
                  staged: tuple[Path, Path] | None = None) -> StorageError:
    """One line: the path (the failing file when the OS names it, else the output being written) and why.
    `staged` = (temp path, final path): a file inside a temp stand-in is named by where it was going."""
    where = written_path(None if err.filename is None else str(err.filename), path, staged) or str(path)
    reason = err.strerror or str(err) or type(err).__name__
    return StorageError(f"{where}: {doing} ({reason})" if doing else f"{where}: {reason}")


# Every temp name carries its writer (pid@host). A temp left by a writer that was killed (SIGKILL, power loss)
# is removed by the next atomic write into the same folder on this host, so reruns leave no debris; a live
# writer's temp, or another host's, is kept.
_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
_TEMP_NAME = re.compile(r"^\..+(?:\.(\d+)@([A-Za-z0-9-]+)\..*\.tmp|-tmp-(\d+)@([A-Za-z0-9-]+)-)")


def _owner() -> str:
    """This writer's tag, read at each write (a forked child is another writer than its parent)."""
    return f"{os.getpid()}@{_HOST}"


def _writer_is_gone(pid: int, host: str) -> bool:
    if host != _HOST or pid == os.getpid():
        return False  # another machine's writer cannot be checked; our own temps are ours to finish
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive (another user's process)
    return False


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temps in `folder` (`.<name>.<pid@host>.*.tmp*` files, `.<name>-tmp-<pid@host>-*` folders)
    whose writer has died."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        found = _TEMP_NAME.match(entry.name)
        if found is None:
            continue
        pid, host = (found.group(1), found.group(2)) if found.group(1) else (found.group(3), found.group(4))
        if not _writer_is_gone(int(pid), host):
            continue
        with _suppress():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
    return removed


@contextmanager
def writing(path: str | os.PathLike, staged: dict[str, Path] | None = None) -> Iterator[None]:
    """Any OSError while writing `path` becomes a StorageError naming it (or the file the OS names; a file in
    the temp stand-in `staged["tmp"]` is named as `path`)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as err:
        tmp = (staged or {}).get("tmp")
        pair = (tmp, Path(path)) if tmp else None
        # an OS error with an errno is about this write, whatever the errno; any other shape (safetensors,
        # torch, SQLite, a copytree's list of reasons in an OSError without errno) when a recogniser knows it
        plain = isinstance(err, OSError) and err.errno is not None
        mapped = None if plain else as_storage_error(err, path, staged=pair)
        if mapped is None and isinstance(err, OSError):
            mapped = storage_error(err, path, staged=pair)
        if mapped is None:
            raise
        raise mapped from err


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` for any writer (text, savefig, torch.save); on success it replaces
    `path` in one rename, on failure it is removed and `path` keeps its old content."""
    path = Path(path)
    staged: dict[str, Path] = {}
    with writing(path, staged):
        path.parent.mkdir(parents=True, exist_ok=True)
        # the temp name keeps the final suffix: writers such as savefig pick the format from it
        remove_stale_temps(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        staged["tmp"] = Path(tmp)
        try:
            yield Path(tmp)
            os.chmod(tmp, default_mode())
            os.replace(tmp, path)
        except BaseException:
            with _suppress():
                os.unlink(tmp)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def retired_path(target: str | os.PathLike) -> Path:
    """Where `atomic_directory` parks the old `target` between its two renames: `.<name>-old` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}-old")


def recover_directory(target: str | os.PathLike, complete: Callable[[Path], bool] | None = None) -> bool:
    """Undo a swap that a kill stopped between its two renames (old folder moved aside, new one not yet in
    place): when `target` is missing and its retired copy is there (and `complete(copy)` holds, if given),
    rename the copy back. Returns whether it did."""
    target = Path(target)
    old = retired_path(target)
    if target.exists() or not old.is_dir() or (complete is not None and not complete(old)):
        return False
    os.rename(old, target)
    return True


@contextmanager
def atomic_directory(target: str | os.PathLike, *, replace: bool = True) -> Iterator[Path]:
    """Yield a temp folder beside `target` to fill; on success its files are synced and it replaces `target`
    by rename (the old folder is removed only once the new one is in place), on failure it is removed: a
    reader sees the old folder or the complete new one, and a crash or a full disk leaves no half folder.

    The swap is two renames: `target` -> `retired_path(target)`, temp -> `target`. A kill between them leaves
    the old folder under its retired name; `recover_directory` (called here before every swap, and by readers
    such as `has_checkpoint`) puts it back. `replace=False`: a `target` that exists by the time the new folder
    is ready (another process built it first) is kept and ours is discarded."""
    target = Path(target)
    staged: dict[str, Path] = {}
    with writing(target, staged):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent)
        tmp = staged["tmp"] = Path(tempfile.mkdtemp(prefix=f".{target.name}-tmp-{_owner()}-", dir=target.parent))
        try:
            yield tmp
            for item in tmp.rglob("*"):  # some writers (safetensors) create 0600 files whatever the umask
                os.chmod(item, default_mode(directory=item.is_dir()))
                if item.is_file():
                    with open(item, "rb") as handle:
                        os.fsync(handle.fileno())
            os.chmod(tmp, default_mode(directory=True))
            _swap_in(tmp, target, replace)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _swap_in(tmp: Path, target: Path, replace: bool) -> None:
    recover_directory(target)
    if not replace:
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first: theirs is as good as ours
            return
        _fsync_dir(target.parent)
        return
    old = retired_path(target)
    shutil.rmtree(old, ignore_errors=True)  # stale: `target` is in place (recovered above if it was not)
    if target.exists():
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        recover_directory(target)  # the old folder back in place at once, not only at the next swap
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def _plain(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null (at any depth: loss histories are lists) so every reader can
    parse the file; numpy/torch scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if not isinstance(value, str | bytes) and hasattr(value, "item") and callable(value.item):
        return _plain(value.item())
    return value


def to_json(data: Any, **kwargs: Any) -> str:
    """Strict JSON (`allow_nan=False`): a non-finite number that slipped past `_plain` is a bug, not a file."""
    return json.dumps(_plain(data), allow_nan=False, **kwargs)


def to_json_line(record: dict[str, Any]) -> str:
    return to_json(record, ensure_ascii=False) + "\n"


def atomic_write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, to_json(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
