"""Tables over collected jobs: the flat `results.csv` (one line per job) and the pivoted Markdown table."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from lora_lab.report.collect import JobRecord
from lora_lab.report.job_result import finite_number

CSV_FIRST = ["job", "status"]


def csv_text(records: Sequence[JobRecord]) -> str:
    """`results.csv` as text, so the caller writes it atomically."""
    override_keys = list(dict.fromkeys(k for r in records for k in r.overrides))
    # an unreadable job's row says why in `error`
    fields = [{**r.metrics, **({"error": r.problem} if r.unreadable else {})} for r in records]
    metric_keys = sorted({k for f in fields for k in f} - {"status"})
    header = [*CSV_FIRST, *override_keys, *[k for k in metric_keys if k not in override_keys]]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    for r, f in zip(records, fields, strict=True):
        writer.writerow({**f, **r.overrides, "job": r.num, "status": r.status})
    return buffer.getvalue()


def label(record: JobRecord, keys: Sequence[str]) -> str:
    if not keys:
        return "all"
    parts = [record.value(k) for k in keys]
    return ", ".join("-" if p is None else str(p) for p in parts)


def format_number(value: float, digits: int = 4) -> str:
    """Four significant digits, but counts, bytes and tokens/s (>= 1000) in full with thousands separators:
    `921,600` reads better than `9.216e+05`."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


class Cell:
    """All jobs that land in one (row, column): mean of the ok jobs' metric; every other job is counted under its
    own status (failed, interrupted, refused, missing, unreadable, ...), not hidden."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.others: dict[str, int] = {}  # status -> jobs, in the order first seen
        self.no_metric = 0

    def add(self, record: JobRecord, metric: str) -> None:
        if record.status == "ok":
            value = finite_number(record.metrics.get(metric))
            if value is None:
                self.no_metric += 1
            else:
                self.values.append(value)
        else:
            self.others[record.status] = self.others.get(record.status, 0) + 1

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    def text(self, digits: int = 4) -> str:
        counted = [*self.others.items(), ("n/a", self.no_metric)]
        notes = [f"{n} {what}" for what, n in counted if n]
        if self.mean is None:
            if not notes:
                return ""
            return notes[0].split(" ", 1)[1] if len(notes) == 1 and notes[0].startswith("1 ") else " + ".join(notes)
        main = format_number(self.mean, digits) + (f" (n={len(self.values)})" if len(self.values) > 1 else "")
        return main + (f" + {', '.join(notes)}" if notes else "")


def pivot(records: Sequence[JobRecord], rows: Sequence[str], cols: Sequence[str], metric: str
          ) -> tuple[list[str], list[str], dict[tuple[str, str], Cell]]:
    row_labels = list(dict.fromkeys(label(r, rows) for r in records))
    col_labels = list(dict.fromkeys(label(r, cols) for r in records))
    cells: dict[tuple[str, str], Cell] = {}
    for r in records:
        cells.setdefault((label(r, rows), label(r, cols)), Cell()).add(r, metric)
    return row_labels, col_labels, cells


def _status_summary(records: Sequence[JobRecord]) -> str:
    counts = {s: sum(r.status == s for r in records) for s in dict.fromkeys(r.status for r in records)}
    return f"{len(records)} jobs: " + ", ".join(f"{n} {s}" for s, n in counts.items())


def markdown(records: Sequence[JobRecord], rows: Sequence[str], cols: Sequence[str], metric: str) -> str:
    row_labels, col_labels, cells = pivot(records, rows, cols, metric)
    corner = f"{' × '.join(rows) or 'rows'} \\ {' × '.join(cols) or 'cols'}"
    lines = [f"| {corner} | " + " | ".join(col_labels) + " |",
             "|---|" + "---|" * len(col_labels)]
    for row in row_labels:
        texts = [cells[(row, col)].text() if (row, col) in cells else "" for col in col_labels]
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    return f"{metric} ({_status_summary(records)})\n\n" + "\n".join(lines) + "\n"


def metric_cells(records: Sequence[JobRecord], keys: Sequence[str], metrics: Sequence[str]
                 ) -> tuple[dict[tuple[str, ...], list[JobRecord]], dict[tuple[tuple[str, ...], str], Cell]]:
    """Jobs grouped by their values of `keys` (one group per job when the keys are the swept ones), and one
    Cell per (group, metric)."""
    groups: dict[tuple[str, ...], list[JobRecord]] = {}
    for r in records:
        groups.setdefault(tuple("-" if r.value(k) is None else str(r.value(k)) for k in keys), []).append(r)
    cells: dict[tuple[tuple[str, ...], str], Cell] = {}
    for group, members in groups.items():
        for metric in metrics:
            cell = cells.setdefault((group, metric), Cell())
            for r in members:
                cell.add(r, metric)
    return groups, cells


def metrics_markdown(records: Sequence[JobRecord], keys: Sequence[str], metrics: Sequence[str],
                     title: str = "metrics") -> str:
    """Several metrics in one table: one row per group of `keys`, one column per key and per metric."""
    groups, cells = metric_cells(records, keys, metrics)
    keys = list(keys) or ["jobs"]
    lines = ["| " + " | ".join([*keys, *metrics]) + " |",
             "|" + "---|" * len(keys) + "---:|" * len(metrics)]
    for group in groups:
        labels = list(group) or ["all"]
        lines.append("| " + " | ".join([*labels, *(cells[(group, m)].text() for m in metrics)]) + " |")
    return f"{title} ({_status_summary(records)})\n\n" + "\n".join(lines) + "\n"
