"""What one launch of a multirun did with each of its jobs, from the jobs' attempt records of that launch.

Each job of the launch is counted as what it was in this launch: `ok`, `skipped` (already done, same config),
`refused`, `failed`, `interrupted`, `missing` (no outcome recorded: never started, or killed) or `unreadable` (it
ended ok but its metrics.json cannot be used). The jobs of the launch are the grid in `multirun.yaml` (a grid job
without a record of this launch is `missing`, whatever an earlier launch left in its dir) plus any job dir this
launch's attempts reached (a search numbers its trials itself); other job dirs belong to earlier launches and are
named as such, not counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lora_lab.report.collect import JobRecord, collect, expected_jobs, swept_keys
from lora_lab.report.job_result import read_attempt

FINE = ("ok", "skipped")  # a launch with only these needs nothing more
SHOWN = ("skipped", "refused", "interrupted", "missing", "unreadable")  # after `N jobs, K ok, F failed`
LABELS = {"skipped": "skipped (already done)"}
SHOWN_EARLIER = 10


@dataclass
class JobOutcome:
    record: JobRecord
    outcome: str
    reason: str | None = None

    @property
    def note(self) -> str:
        return f"job {self.record.num} {self.outcome}" + (f": {self.reason}" if self.reason else "")


@dataclass
class LaunchOutcome:
    jobs: list[JobOutcome] = field(default_factory=list)
    earlier: list[int] = field(default_factory=list)  # job dirs of the sweep dir that this launch did not reach
    reached: int = 0  # jobs with an attempt record of this launch

    @property
    def fine(self) -> bool:
        return all(job.outcome in FINE for job in self.jobs)

    def tally(self) -> str:
        """`3 jobs, 1 ok, 0 failed, 1 skipped (already done), 1 refused`: ok and failed always, others when any."""
        counts = Counter(job.outcome for job in self.jobs)
        parts = [f"{len(self.jobs)} jobs", f"{counts['ok']} ok", f"{counts['failed']} failed"]
        parts += [f"{counts[name]} {LABELS.get(name, name)}" for name in SHOWN if counts[name]]
        return ", ".join(parts)

    def notes(self) -> list[str]:
        """One line per job that did not end fine, one per set of keys some jobs ignored, and the earlier jobs."""
        lines = [job.note for job in self.jobs if job.outcome not in FINE]
        lines += ignored_lines(self.jobs)
        if self.earlier:
            shown = ", ".join(map(str, self.earlier[:SHOWN_EARLIER])) + (", ..." if len(self.earlier) >
                                                                           SHOWN_EARLIER else "")
            lines.append(f"not counted: {len(self.earlier)} job dirs left by earlier launches ({shown})")
        return lines


def _judge(record: JobRecord, attempt: dict) -> JobOutcome:
    """A job this launch reached: what its attempt recorded, checked against what it left."""
    outcome, reason = attempt["outcome"], attempt.get("reason")
    if outcome == "running":
        return JobOutcome(record, "missing", f"started (pid {attempt.get('pid')} on {attempt.get('host')}, "
                                             f"{attempt.get('time')}) but recorded no outcome: killed?")
    if outcome in FINE:
        if record.problem is not None:
            kind = "unreadable" if record.unreadable else "missing"
            return JobOutcome(record, kind, f"ended {outcome} but {record.run_dir}/metrics.json: {record.problem}")
        if record.status != "ok":
            return JobOutcome(record, "failed", f"ended {outcome} but its metrics.json says {record.status}")
    return JobOutcome(record, outcome, reason)


def launch_outcome(sweep_dir: Path, launch: str) -> LaunchOutcome:
    """Every job of the launch `launch` into `sweep_dir`, counted as what it was in that launch."""
    grid = len(expected_jobs(Path(sweep_dir)))
    found = LaunchOutcome()
    for record in collect(sweep_dir):
        attempt = read_attempt(record.run_dir, launch)
        if attempt is not None:
            found.jobs.append(_judge(record, attempt))
            found.reached += 1
        elif record.num < grid:
            found.jobs.append(JobOutcome(record, "missing", "no record of this launch: never started, or killed "
                                                            "before it began"))
        else:
            found.earlier.append(record.num)
    return found


def _ignored_keys(record: JobRecord) -> list[str]:
    listed = record.metrics.get("ignored_keys")
    keys = [str(k) for k in listed] if isinstance(listed, list) else []
    task_keys = record.metrics.get("ignored_task_keys")
    keys += [k.strip() for k in task_keys.split(",") if k.strip()] if isinstance(task_keys, str) else []
    return list(dict.fromkeys(keys))


def ignored_lines(jobs: list[JobOutcome]) -> list[str]:
    """`ignored by 2 of 4 jobs (method=none): train.lr`: each set of keys that the same jobs set aside, once,
    with what those jobs share among the swept keys (or their numbers)."""
    records = [job.record for job in jobs]
    by_key: dict[str, list[JobRecord]] = {}
    for job in jobs:
        if job.outcome in FINE:
            for key in _ignored_keys(job.record):
                by_key.setdefault(key, []).append(job.record)
    groups: dict[tuple[int, ...], list[str]] = {}
    for key, ignoring in by_key.items():
        groups.setdefault(tuple(r.num for r in ignoring), []).append(key)
    swept = swept_keys(records)
    lines = []
    for nums, keys in groups.items():
        ignoring = [r for r in records if r.num in nums]
        shared = [f"{k}={ignoring[0].value(k)}" for k in swept
                  if len({str(r.value(k)) for r in ignoring}) == 1 and ignoring[0].value(k) is not None]
        if len(nums) == len(records):
            lines.append(f"ignored by all {len(nums)} jobs: {', '.join(keys)}")
            continue
        which = ", ".join(shared) if shared else "jobs " + ", ".join(map(str, nums))
        lines.append(f"ignored by {len(nums)} of {len(records)} jobs ({which}): {', '.join(keys)}")
    return lines
