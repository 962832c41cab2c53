"""`lora-lab-report <multirun dir> [--rows method --cols task --metric score[,...]] [--resources]`.

One metric: a rows × cols table (results.md / results.png). Several metrics: one table with a row per group of
the rows and cols keys and a column per metric. `--resources`: the resource table, one row per job
(resources.md / resources.png). Every mode also writes results.csv and, when jobs trained, loss_curves.png.
Every job without a usable metrics.json is named on stderr; a broken one (truncated, not JSON, no status, a score
that is not a finite number) is a row with status `unreadable`, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from lora_lab.config.errors import ConfigError, DataError, report_input_error
from lora_lab.report.collect import MISSING, JobRecord, collect, swept_keys
from lora_lab.report.plot import bar_chart, loss_curves, metric_panels
from lora_lab.report.resources import curve_label, resource_keys, resource_metrics
from lora_lab.report.table import csv_text, finite_number, markdown, metrics_markdown
from lora_lab.utils.io import atomic_file, atomic_write_text, writing


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lora-lab-report",
        description="Summarise a lora-lab multirun dir: results.csv, results.md (table) and results.png (plot).")
    parser.add_argument("sweep_dir", type=Path, help="the multirun dir (with multirun.yaml and 0/, 1/, ...)")
    # defaults are None so that only keys the user typed are checked against the jobs (DEFAULTS fill them in)
    parser.add_argument("--rows", default=None, help="comma-separated override/metrics keys for table rows "
                        "(default: method)")
    parser.add_argument("--cols", default=None, help="comma-separated keys for table columns ('' for one; "
                        "default: task)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--metric", default=None, help="metrics.json key(s) to show, comma-separated: several make "
                      "one table with a column per metric (default: score)")
    what.add_argument("--resources", action="store_true", help="the resource table, one row per job: trainable "
                      "params and %%, model bytes, train time and tokens/s, peak RSS, eval throughput, score")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the sweep dir)")
    return parser.parse_args(argv)


DEFAULTS = {"rows": "method", "cols": "task", "metric": "score"}


def check_keys(records: list[JobRecord], args: argparse.Namespace) -> None:
    """Every grouping key the user gave must be an override or metrics.json field of some job, and the metric a
    number in some ok job's metrics.json: a typo would otherwise give a table of `-` or `n/a` that looks like a
    result (and overwrite a good one)."""
    present = sorted({k for r in records for k in (*r.overrides, *r.metrics)})
    for flag in ("rows", "cols"):
        for key in _keys(getattr(args, flag) or ""):
            if key not in present:
                raise ConfigError(f"--{flag}", key, "no job has this override or metrics.json key", choices=present)
    ok = [r for r in records if r.status == "ok"]
    numeric = sorted({k for r in ok for k, v in r.metrics.items() if finite_number(v) is not None})
    metrics = _keys(args.metric or DEFAULTS["metric"])  # checked even as the default: all-`n/a` is no result
    if not metrics:
        raise ConfigError("--metric", args.metric, "names no metrics.json key", choices=numeric)
    for metric in metrics:
        if ok and metric not in numeric:
            raise ConfigError("--metric", metric, "not a number in any ok job's metrics.json", choices=numeric)


def loss_figure(records: list[JobRecord], path: Path, title: str) -> bool:
    """`loss_curves.png` from every job's `train_losses.json`, labelled by the swept keys; False (nothing
    written) when no job has a loss history, e.g. an eval-only sweep."""
    keys = swept_keys(records)
    curves = {curve_label(r, keys): losses for r in records if (losses := r.train_losses())}
    if not curves:
        return False
    with atomic_file(path) as tmp:
        loss_curves(curves, tmp, title=title)
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        records = collect(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"lora-lab-report: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"lora-lab-report: no jobs found in {args.sweep_dir}", file=sys.stderr)
        return 1
    out, name, note = args.out or args.sweep_dir, args.sweep_dir.name, ""
    if args.resources:  # rows: method, task and the swept keys (one per job) unless typed; no columns
        present, absent = resource_metrics(records)
        args.metric = ",".join(present)
        args.rows = ",".join(resource_keys(records)) if args.rows is None else args.rows
        args.cols = "" if args.cols is None else args.cols
        note = f"\nnot recorded by any ok job, left out: {', '.join(absent)}\n" if absent else ""
    try:
        check_keys(records, args)  # before anything is written
        for key, default in DEFAULTS.items():
            setattr(args, key, default if getattr(args, key) is None else getattr(args, key))
        rows, cols, metrics = _keys(args.rows), _keys(args.cols), _keys(args.metric)
        stem = "resources" if args.resources else "results"
        if stem == "results" and len(metrics) == 1:
            table = markdown(records, rows, cols, metrics[0])
            draw = partial(bar_chart, records, rows, cols, metrics[0], title=f"{metrics[0]}: {name}")
        else:  # several metrics: one row per group of the rows and cols keys, one column per metric
            title = stem if args.resources else ", ".join(metrics)
            table = metrics_markdown(records, [*rows, *cols], metrics, title=title) + note
            draw = partial(metric_panels, records, [*rows, *cols], metrics, title=f"{stem}: {name}")
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.csv", csv_text(records))
        atomic_write_text(out / f"{stem}.md", table)
        with atomic_file(out / f"{stem}.png") as tmp:
            draw(path=tmp)
        written = [out / "results.csv", out / f"{stem}.md", out / f"{stem}.png"]
        if loss_figure(records, out / "loss_curves.png", title=f"train loss: {name}"):
            written.append(out / "loss_curves.png")
    except (ConfigError, DataError) as err:
        report_input_error("lora-lab-report", err)
        return 2
    print(table)
    print("wrote " + ", ".join(map(str, written)))
    for line in unusable_lines(records):
        print(f"lora-lab-report: {line}", file=sys.stderr)
    return 1 if any(r.unreadable for r in records) else 0


def unusable_lines(records: list[JobRecord]) -> list[str]:
    """One line per job without a usable metrics.json, saying what the report did with it: nothing is dropped
    without a word."""
    lines = []
    for r in records:
        if r.unreadable:
            lines.append(f"job {r.num}: {r.run_dir / 'metrics.json'}: {r.problem}; shown as a row with status "
                         "unreadable")
        elif r.status == MISSING:
            where = f"{r.run_dir}: {r.problem}" if r.run_dir.is_dir() else "no job dir (never started)"
            lines.append(f"job {r.num}: {where}; shown as missing")
    return lines


if __name__ == "__main__":
    sys.exit(main())
