"""What a job left in its dir, read the same way by every reader of job results (the multirun's accounting,
`lora-lab-report`, `from_runs`, the search): its `metrics.json` is either a usable record or a one-line reason why
not, and each multirun launch's attempt record says what that launch did with the job.

Why one reader: a reader that skips what it cannot parse drops a job without a word, and readers that each decide
for themselves disagree about the same sweep. Why attempt records: `metrics.json` belongs to the result, not to the
launch — a rerun that was refused or killed leaves the earlier result in place, so only a record written by this
launch's own attempt tells what this launch did.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.json"
ATTEMPTS_DIR = ".attempts"  # <job dir>/.attempts/<launch id>.json, one small file per launch
LAUNCH_ENV = "LORA_LAB_LAUNCH"  # the launch id, set by the multirun's process and inherited by every job
# What an attempt came to. `running` is written first, so an attempt that ends without another outcome was killed.
OUTCOMES = ("running", "ok", "skipped", "refused", "failed", "interrupted")


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class JobResult:
    """A job's `metrics.json`: `metrics` when usable, else `problem` says why (`found`: the file exists, so the
    problem is a broken record, not an absent one)."""

    path: Path
    metrics: dict[str, Any] | None = None
    problem: str | None = None
    found: bool = True

    @property
    def unreadable(self) -> bool:
        return self.metrics is None and self.found


def _problem(metrics: Any) -> str | None:
    """Why a parsed `metrics.json` is not a usable record, or None."""
    if not isinstance(metrics, dict):
        return f"not a JSON object (a {type(metrics).__name__})"
    status = metrics.get("status")
    if not isinstance(status, str) or not status:
        return "no status" if status is None else f"status is not a word ({status!r})"
    score = metrics.get("score", None)
    # null is a measurement that was not made (an ok fine-tune with eval.after=false: `score_note` says so)
    if score is not None and finite_number(score) is None:
        return f"score is not a finite number ({score!r})"
    return None


def read_result(job_dir: Path) -> JobResult:
    """The job's `metrics.json` as a usable record (an object with a `status`, and a finite `score` where it has
    one), or the reason it is not: absent, unreadable, truncated, not JSON, not an object, ..."""
    path = Path(job_dir) / METRICS_FILE
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return JobResult(path, problem=f"no {METRICS_FILE}", found=False)
    except OSError as err:
        return JobResult(path, problem=f"cannot be read ({err.strerror or err})")
    except UnicodeDecodeError as err:
        return JobResult(path, problem=f"not UTF-8 (byte {err.object[err.start]:#x} at offset {err.start})")
    if not text.strip():
        return JobResult(path, problem="empty (cut off while written?)")
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError as err:
        return JobResult(path, problem=f"not valid JSON, truncated? ({err})")
    problem = _problem(metrics)
    return JobResult(path, problem=problem) if problem else JobResult(path, metrics=metrics)


def attempt_path(job_dir: Path, launch: str) -> Path:
    return Path(job_dir) / ATTEMPTS_DIR / f"{launch}.json"


def read_attempt(job_dir: Path, launch: str) -> dict[str, Any] | None:
    """What the attempt of `launch` at this job came to (`outcome`, `reason`, ...), or None: no attempt of that
    launch reached the job (or its record cannot be read, which is counted the same way: nothing known)."""
    try:
        record = json.loads(attempt_path(job_dir, launch).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("outcome") not in OUTCOMES:
        return None
    return record
