"""Run a job in a forked child with a fault plan, and check what it left against the run contract.

The parent imports the project once; each case is a `fork` (a fresh process in a second, with real exit codes,
signals and output), so a job can be failed at every one of its write points within the test budget. Jobs run
with one thread (`hardware.num_threads=1`): nothing in the parent has started a thread pool a child could
inherit half-locked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.faults import FaultPlan, install

PROGRAM_LINE_PREFIXES = ("lora-lab", "lora_lab.")  # every tool's one-line messages start with its name


@dataclass
class Outcome:
    code: int | None        # exit status, or None when a signal ended the process
    signal: int | None
    output: str             # stdout and stderr together
    points: int             # write points reached
    fired: str | None       # the write point that failed (or where the kill was sent)

    @property
    def ok(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        tail = "\n".join(self.output.strip().splitlines()[-6:])
        return f"exit {self.code} signal {self.signal} at {self.fired!r}:\n{tail}"


def run_forked(entry: Callable[[], Any], plan: FaultPlan | None = None, env: dict[str, str] | None = None,
               timeout: float = 300) -> Outcome:
    """`entry()` in a forked child with `plan` installed; its exit code is `entry`'s int or SystemExit code."""
    plan = plan or FaultPlan()
    log = tempfile.TemporaryFile()
    report_read, report_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(report_read)
            os.environ.update(env or {})
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            sys.stdout = sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(1), "wb", buffering=0),
                                                       write_through=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            install(plan)
            try:
                result = entry()
                code = result if isinstance(result, int) else 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:  # noqa: BLE001 — an escaped exception is what the test looks for
                traceback.print_exc()
                code = 1
        finally:
            try:
                os.write(report_write, json.dumps({"points": plan.count, "fired": plan.fired}).encode())
            finally:
                os._exit(code)
    os.close(report_write)
    status, deadline = None, time.monotonic() + timeout
    while status is None:  # a job that hangs is killed and reported, never waited on forever
        done, status_now = os.waitpid(pid, os.WNOHANG)
        if done:
            status = status_now
        elif time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            log.seek(0, os.SEEK_END)
            log.write(f"\nfault harness: killed after {timeout:.0f} s: the job hung\n".encode())
        else:
            time.sleep(0.02)
    with os.fdopen(report_read, "rb") as handle:
        raw = handle.read()
    report = json.loads(raw) if raw else {"points": plan.count, "fired": None}
    log.seek(0)
    output = log.read().decode("utf-8", "replace")
    log.close()
    return Outcome(code=os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
                   signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                   output=output, points=report["points"], fired=report["fired"])


# ----- the invariant -----
TEMP_MARKERS = (".tmp", "-tmp-")


def is_temp(path: Path) -> bool:
    name = path.name
    return any(marker in name for marker in TEMP_MARKERS) or (name.startswith(".") and name.endswith("-old"))


def file_problem(path: Path) -> str | None:
    """Why `path` is not a complete, valid file of its kind (None: it is)."""
    suffix = path.suffix
    try:
        if suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)
        elif suffix == ".jsonl":
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    json.loads(line, parse_constant=_refuse)
        elif suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as handle:
                for key in handle.keys():
                    handle.get_tensor(key)
        elif suffix == ".yaml":
            import yaml

            yaml.safe_load(path.read_text(encoding="utf-8"))
        elif suffix == ".csv":
            rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
            if rows and any(len(r) != len(rows[0]) for r in rows):
                return "rows of different lengths"
        elif suffix == ".png":
            data = path.read_bytes()
            if not (data.startswith(b"\x89PNG") and data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")):
                return "not a complete PNG"
        elif suffix == ".db":
            import sqlite3

            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                if db.execute("pragma integrity_check").fetchone()[0] != "ok":
                    return "sqlite integrity check failed"
    except Exception as err:  # noqa: BLE001 — any failure to read it is the finding
        return f"{type(err).__name__}: {str(err)[:160]}"
    return None


def _refuse(constant: str) -> None:
    raise ValueError(f"non-standard JSON constant {constant}")


def invalid_files(root: Path, *, temps_allowed: bool = False) -> list[str]:
    """Every file under `root` that is incomplete or invalid, and (unless allowed) every temp leftover."""
    problems = []
    if not root.exists():
        return problems
    for path in sorted(root.rglob("*")):
        if any(is_temp(parent) for parent in [path, *path.relative_to(root).parents][:-1]):
            if not temps_allowed and is_temp(path):
                problems.append(f"{path.relative_to(root)}: temp left behind")
            continue
        if path.is_file():
            problem = file_problem(path)
            if problem:
                problems.append(f"{path.relative_to(root)}: {problem}")
    return problems


def statuses(root: Path) -> dict[str, str | None]:
    """metrics.json path (relative) -> its status (None: unreadable), for every job record under `root`."""
    found = {}
    for path in sorted(root.rglob("metrics.json")) if root.exists() else []:
        if any(is_temp(p) for p in path.relative_to(root).parents):
            continue
        try:
            found[str(path.relative_to(root))] = json.loads(path.read_text()).get("status")
        except (ValueError, OSError, AttributeError):
            found[str(path.relative_to(root))] = None
    return found


def contract_violations(outcome: Outcome, root: Path, *, killed: bool = False) -> list[str]:
    """The run contract after a fault: exit 0 with every job ok and every file valid, or exit > 0 (or a kill)
    with one clear line, no traceback, no job presented as ok with a broken file."""
    problems = []
    if "Traceback (most recent call last)" in outcome.output:
        problems.append("a traceback was printed")
    files = invalid_files(root, temps_allowed=killed)
    records = statuses(root)
    if outcome.ok:
        problems += [f"exit 0 but {p}" for p in files]
        problems += [f"exit 0 but {path}: status {s}" for path, s in records.items() if s != "ok"]
    else:
        if not killed:
            lines = [line for line in outcome.output.splitlines() if line.startswith(PROGRAM_LINE_PREFIXES)]
            if not lines:
                problems.append("exit > 0 without a line from the program saying why")
        broken = [p for p in files if not is_temp(Path(p.split(":")[0]))]
        for path, status in records.items():
            job_dir = str(Path(path).parent)
            job_dir = "" if job_dir == "." else job_dir + "/"
            if status == "ok" and any(p.startswith(job_dir) for p in broken):
                problems.append(f"{path}: status ok beside a broken file ({broken[0]})")
        if not killed and files:
            problems += [p for p in files if p.endswith("temp left behind")]
    return problems
