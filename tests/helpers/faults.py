"""Fault injection at every write a job makes: the N-th write fails (or the process is killed there).

Write points counted (each call is one point): opening a file for writing (`open`, `Path.open/write_*`,
`os.open` with a write flag, as `tempfile` does), `os.mkdir` (of a folder not yet there), `os.replace`/`os.rename`, `os.fsync`, safetensors'
`serialize_file` and `torch.save` to a path. At point N the fault is raised the way the real writer raises it:
- `ENOSPC` / `EIO`: a file opened for writing takes half of the first write, then `OSError(errno)` (so a partial
  file is left behind, as on a full disk); other calls raise `OSError(errno, strerror, path)`; safetensors raises
  its `SafetensorError` ("I/O error: ... (os error N) at path ..."), torch.save its writer's `RuntimeError`;
- `EACCES`: every kind of point raises at once (`PermissionError`; safetensors/torch in their shapes);
- `SIGKILL` / `SIGTERM`: the process sends itself the signal at that point.
Used by tests/faults: a forked child installs a plan, runs a job, and the parent checks what it left.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import signal
from dataclasses import dataclass, field
from typing import Any

WRITE_FAULTS = ("ENOSPC", "EIO", "EACCES")
KILL_FAULTS = ("SIGKILL", "SIGTERM")


@dataclass
class FaultPlan:
    at: int | None = None      # the write point that fails (1-based); None: count only
    kind: str = "ENOSPC"
    count: int = 0
    sites: list[str] = field(default_factory=list)  # what each point was (for messages)
    fired: str | None = None

    def point(self, site: str) -> bool:
        """Count one write point; True when this one must fail."""
        self.count += 1
        if len(self.sites) < 10000:
            self.sites.append(site)
        if self.at is not None and self.count == self.at and self.fired is None:
            self.fired = site
            if self.kind in KILL_FAULTS:
                os.kill(os.getpid(), getattr(signal, self.kind))
                return False  # SIGTERM is handled by the job (an interrupt); the write itself goes on
            return True
        return False

    def os_error(self, path: Any = None) -> OSError:
        code = getattr(errno, self.kind)
        if path is None:
            return OSError(code, os.strerror(code))
        return OSError(code, os.strerror(code), str(path))


class _HalfWritten:
    """A real file object whose first write stores half the data, then fails like a full disk."""

    def __init__(self, handle: Any, plan: FaultPlan) -> None:
        self._handle, self._plan, self._failed = handle, plan, False

    def write(self, data: Any) -> int:
        if not self._failed:  # the first write lands half, as on a disk that fills mid-write
            self._failed = True
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
        raise self._plan.os_error()

    def close(self) -> None:
        self._handle.close()
        if not self._failed:  # nothing was written: the delayed error shows at close, as buffered writes do
            self._failed = True
            raise self._plan.os_error()

    def __enter__(self) -> _HalfWritten:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self):
        return iter(self._handle)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


_WRITE_MODES = ("w", "a", "x", "+")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def install(plan: FaultPlan) -> None:
    """Patch the write functions of this process for `plan` (for a forked child: never undone)."""
    import safetensors.torch as safetensors_torch
    import torch
    from safetensors import SafetensorError

    real_open, real_os_open = io.open, os.open
    real_mkdir, real_replace, real_rename, real_fsync = os.mkdir, os.replace, os.rename, os.fsync
    real_serialize, real_torch_save = safetensors_torch.serialize_file, torch.save

    def fault_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int) and any(m in mode for m in _WRITE_MODES) and plan.point(f"open {file}"):
            if plan.kind == "EACCES":
                raise plan.os_error(file)
            return _HalfWritten(real_open(file, mode, *args, **kwargs), plan)
        return real_open(file, mode, *args, **kwargs)

    def fault_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & _WRITE_FLAGS and plan.point(f"os.open {path}"):
            raise plan.os_error(path)
        return real_os_open(path, flags, *args, **kwargs)

    def simple(real: Any, name: str) -> Any:
        def patched(*args: Any, **kwargs: Any) -> Any:
            target = args[-1] if name in ("replace", "rename") and args else (args[0] if args else None)
            if name == "mkdir" and os.path.isdir(target):  # `mkdir(exist_ok=True)` of a folder that is there:
                return real(*args, **kwargs)  # nothing is written, the OS answers EEXIST whatever the disk
            if plan.point(f"{name} {target}"):
                raise plan.os_error(None if name == "fsync" else target)
            return real(*args, **kwargs)
        return patched

    def fault_serialize(tensors: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        if plan.point(f"safetensors {filename}"):
            code = getattr(errno, plan.kind)
            tmp = os.path.join(os.path.dirname(str(filename)), ".tmpF4ULT0")
            raise SafetensorError(
                f'Error while serializing: I/O error: {os.strerror(code)} (os error {code}) at path "{tmp}"')
        return real_serialize(tensors, filename, *args, **kwargs)

    def fault_torch_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(f, str | os.PathLike) and plan.point(f"torch.save {f}"):
            if plan.kind == "EACCES":
                raise RuntimeError(f"File {f} cannot be opened.")
            raise RuntimeError("[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed")
        return real_torch_save(obj, f, *args, **kwargs)

    builtins.open = io.open = fault_open
    os.open = fault_os_open
    os.mkdir = simple(real_mkdir, "mkdir")
    os.replace = simple(real_replace, "replace")
    os.rename = simple(real_rename, "rename")
    os.fsync = simple(real_fsync, "fsync")
    safetensors_torch.serialize_file = fault_serialize
    torch.save = fault_torch_save
    import torch.serialization

    torch.serialization.save = fault_torch_save
