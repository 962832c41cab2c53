"""A run dir holds one config and one writer, so a `metrics.json` always belongs to the config beside it.

* One writer: a lock file (`.lock`: pid, host, start time, SLURM job) is taken before anything is written and
  released at the end. A second process is refused with one line; a lock whose process is gone (same host, pid
  dead) or that an earlier attempt of the same SLURM job left behind is stale and taken over.
* One config: the resolved job config is kept beside the result (`job_config.json`; Hydra rewrites `.hydra/` before
  any of our code runs, so it cannot be the record). A rerun with the same config skips a finished job and
  resumes/restarts an unfinished one; a rerun with another config is refused naming the keys that differ (the
  `.hydra/` of the result is put back), unless `overwrite=true`, which moves the old result aside into
  `<run dir>.replaced-<time>/` and starts afresh. Keys that cannot change a result are not compared.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lora_lab.config.errors import ConfigError
from lora_lab.report.job_result import ATTEMPTS_DIR
from lora_lab.training.distributed import CLAIMED_ENV, launched_rank
from lora_lab.utils.io import atomic_write_json, read_json

log = logging.getLogger("lora_lab")

LOCK_FILE = ".lock"
CONFIG_FILE = "job_config.json"
METRICS_FILE = "metrics.json"
HYDRA_DIR = ".hydra"
HYDRA_OF_RESULT = ".hydra-of-result"  # `.hydra/` as the job that wrote this dir's result saw it
# Keys that do not change what a job computes: where it logs, what it prints, how it was (re)started.
UNCOMPARED = ("logger", "print_summary", "resume", "overwrite")
SHOWN_DIFFERENCES = 6


def job_config(cfg: DictConfig) -> dict[str, Any]:
    """The config a result is a measurement of: resolved, minus the keys that cannot change it."""
    try:
        data = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 — a bad interpolation is validation's to report, one line
        data = OmegaConf.to_container(cfg, resolve=False)
    return {k: v for k, v in data.items() if k not in UNCOMPARED and k != "hydra"}


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): data}


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every dotted key whose value differs (JSON-normalised, so 1e-3 == 0.001)."""
    old, new = _flat(json.loads(json.dumps(recorded))), _flat(json.loads(json.dumps(current)))
    missing = object()
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key, missing) != new.get(key, missing)]
    # another option of a group (method=lora -> none) differs in every key of it: name the option only
    swapped = {key[: -len(".name")] for key in changed if key.endswith(".name")}
    changed = [key for key in changed if key.endswith(".name") or key.rpartition(".")[0] not in swapped]
    return [f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}" for key in changed]


def _describe(changed: list[str]) -> str:
    shown = "; ".join(changed[:SHOWN_DIFFERENCES])
    more = len(changed) - SHOWN_DIFFERENCES
    return shown + (f"; and {more} more" if more > 0 else "")


# ----- the lock -----

def _slurm_job() -> str | None:
    job = os.environ.get("SLURM_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{job}_{task}" if job and task else job


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(holder: dict[str, Any] | None) -> bool:
    """A lock nobody holds any more: unreadable, its pid dead on this host, ours, or left by an earlier attempt
    of this same SLURM job (a requeue runs on any node)."""
    if not holder:
        return True
    if holder.get("slurm_job") and holder.get("slurm_job") == _slurm_job():
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = int(holder.get("pid") or 0)
    return pid == os.getpid() or pid <= 0 or not _alive(pid)


def acquire_lock(run_dir: Path) -> Path:
    """Create `<run_dir>/.lock` with our identity in one atomic step (link of a filled temp file)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
          "slurm_job": _slurm_job()}
    fd, tmp = tempfile.mkstemp(prefix=".lock.", dir=run_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(me, handle)
        for _ in range(3):
            try:
                os.link(tmp, lock)
                return lock
            except FileExistsError:
                holder = read_json(lock)
                if not _stale(holder):
                    raise ConfigError(
                        "hydra.run.dir", str(run_dir),
                        f"another lora-lab process is writing this run dir (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, since {holder.get('started')}); wait for it, or use another dir "
                        f"(if that process is gone, delete {lock})") from None
                log.warning("%s: taking over a stale lock (%s)", lock, holder)
                lock.unlink(missing_ok=True)
        raise ConfigError("hydra.run.dir", str(run_dir), f"could not take the lock {lock}")
    finally:
        os.unlink(tmp)


def release_lock(lock: Path) -> None:
    holder = read_json(lock)
    if holder and holder.get("pid") == os.getpid():
        lock.unlink(missing_ok=True)


# ----- one config -----

def _has_result(run_dir: Path) -> bool:
    return any((run_dir / name).exists() for name in (METRICS_FILE, CONFIG_FILE, "adapter", "checkpoint"))


def move_aside(run_dir: Path) -> Path:
    """Move the previous result (everything but this job's `.hydra/`, the lock, the log and the launches' attempt
    records) into a sibling folder, with its own `.hydra/` back in place."""
    aside = run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    aside.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name in (HYDRA_DIR, LOCK_FILE, ATTEMPTS_DIR) or entry.suffix == ".log":
            continue
        shutil.move(str(entry), str(aside / (HYDRA_DIR if entry.name == HYDRA_OF_RESULT else entry.name)))
    return aside


def _restore_hydra(run_dir: Path) -> None:
    """Hydra has already written the refused job's config into `.hydra/`: put the result's own back."""
    saved = run_dir / HYDRA_OF_RESULT
    if saved.is_dir():
        shutil.rmtree(run_dir / HYDRA_DIR, ignore_errors=True)
        shutil.copytree(saved, run_dir / HYDRA_DIR)


def _record(run_dir: Path, config: dict[str, Any]) -> None:
    """This job's config becomes the dir's record (and its `.hydra/` the one a later refusal restores)."""
    atomic_write_json(run_dir / CONFIG_FILE, config)
    if (run_dir / HYDRA_DIR).is_dir():
        shutil.rmtree(run_dir / HYDRA_OF_RESULT, ignore_errors=True)
        shutil.copytree(run_dir / HYDRA_DIR, run_dir / HYDRA_OF_RESULT)


def check_config(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Decide what this job does in `run_dir`: return the finished metrics to skip to, or None to run (after
    recording this config); raise ConfigError naming the differing keys when the dir belongs to another config."""
    current = job_config(cfg)
    previous = read_json(run_dir / METRICS_FILE)
    recorded = read_json(run_dir / CONFIG_FILE)
    if cfg.get("overwrite", False) and _has_result(run_dir):
        aside = move_aside(run_dir)
        log.warning("overwrite=true: the previous result of %s was moved to %s", run_dir, aside)
        _record(run_dir, current)
        return None
    changed = differences(recorded, current) if recorded is not None else []
    finished = bool(previous) and previous.get("status") == "ok"
    if changed:
        _restore_hydra(run_dir)
        what = ("a finished result of another config" if finished else
                "a checkpoint of another config" if cfg.get("resume", False) else
                f"an unfinished run ({(previous or {}).get('status', 'no metrics')}) of another config")
        raise ConfigError("hydra.run.dir", str(run_dir),
                          f"holds {what} ({_describe(changed)}); rerun with that config, use another run dir, "
                          f"or add overwrite=true to move it aside and start afresh")
    if finished:
        if recorded is None:
            log.warning("%s finished before configs were recorded beside results; skipping without comparing",
                        run_dir)
        return previous
    _record(run_dir, current)
    return None


def held_by_parent(run_dir: Path) -> bool:
    """True in a rank of a relaunch: its parent holds the run dir (and records the attempt)."""
    launched = launched_rank()
    inside_parent = os.environ.get(CLAIMED_ENV) == str(Path(run_dir).resolve())
    return inside_parent or (launched is not None and launched[1] > 1 and launched[0] != 0)


@contextmanager
def claim(cfg: DictConfig, run_dir: Path) -> Iterator[dict[str, Any] | None]:
    """Hold `run_dir` for this job: yields the finished metrics to skip to, or None to run. The ranks of a
    relaunch run inside their parent's claim; ranks > 0 only ever write their own scratch dirs."""
    run_dir = Path(run_dir)
    if held_by_parent(run_dir):
        yield None
        return
    lock = acquire_lock(run_dir)
    try:
        yield check_config(cfg, run_dir)
    finally:
        release_lock(lock)
