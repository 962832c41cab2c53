"""`lora-lab-report --resources`: the resource table of the fine-tuning seeds — per job what it trained, what it
cost and what it scored — and the label of each job in the loss-curve figure.

Every column is a field of the jobs' `metrics.json` (or derived from two of them, see `collect.with_derived`).
A column that no ok job recorded (e.g. eval throughput of a sweep that skipped evaluation) is left out of the
table and named in a note, rather than shown as a column of `n/a`.
"""

from __future__ import annotations

from collections.abc import Sequence

from lora_lab.report.collect import JobRecord, swept_keys
from lora_lab.report.table import finite_number

RESOURCE_METRICS = (
    "trainable_params",  # parameters the optimizer updates
    "trainable_pct",  # 100 · trainable / total
    "model_bytes",  # weights + buffers as held in memory (a 4-bit base counts its packed bytes)
    "train_seconds",
    "train_tokens_per_s",
    "peak_rss_mb",
    "eval_examples_per_s",  # throughput of the final evaluation (of the trained model)
    "score",  # the task's primary metric after training (before, for method=none)
)
IDENTITY_KEYS = ("method", "task")


def resource_keys(records: Sequence[JobRecord]) -> list[str]:
    """Row labels: method and task (where jobs record them), then every other key the sweep varies, so each
    row is one job."""
    known = {k for r in records for k in (*r.overrides, *r.metrics)}
    return list(dict.fromkeys([*(k for k in IDENTITY_KEYS if k in known), *swept_keys(list(records))]))


def resource_metrics(records: Sequence[JobRecord]) -> tuple[list[str], list[str]]:
    """(columns some ok job recorded as a number, columns none did); `score` alone when no job is ok, so the
    table still shows each job's status."""
    ok = [r for r in records if r.status == "ok"]
    present = [m for m in RESOURCE_METRICS if any(finite_number(r.metrics.get(m)) is not None for r in ok)]
    present = present or ["score"]
    return present, [m for m in RESOURCE_METRICS if m not in present]


def curve_label(record: JobRecord, keys: Sequence[str]) -> str:
    """`method=lora, task=sst2`: the swept keys of this job, or its number when nothing was swept."""
    parts = [f"{k}={record.value(k)}" for k in keys if record.value(k) is not None]
    return ", ".join(parts) or f"job {record.num}"
