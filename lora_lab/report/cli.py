"""`lora-lab-report <multirun dir> [--rows method --cols task --metric score]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.report.collect import JobRecord, collect
from lora_lab.report.plot import bar_chart
from lora_lab.report.table import csv_text, finite_number, markdown
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
    parser.add_argument("--metric", default=None, help="metrics.json key to show (default: score)")
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
    metric = args.metric or DEFAULTS["metric"]  # checked even as the default: an all-`n/a` table is no result
    if ok and metric not in numeric:
        raise ConfigError("--metric", metric, "not a number in any ok job's metrics.json", choices=numeric)


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
    out = args.out or args.sweep_dir
    try:
        check_keys(records, args)  # before anything is written
        for key, default in DEFAULTS.items():
            setattr(args, key, default if getattr(args, key) is None else getattr(args, key))
        rows, cols = _keys(args.rows), _keys(args.cols)
        table = markdown(records, rows, cols, args.metric)
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "results.csv", csv_text(records))
        atomic_write_text(out / "results.md", table)
        with atomic_file(out / "results.png") as tmp:
            bar_chart(records, rows, cols, args.metric, tmp, title=f"{args.metric}: {args.sweep_dir.name}")
    except (ConfigError, DataError) as err:
        from lora_lab.cli import report_input_error

        report_input_error("lora-lab-report", err)
        return 2
    print(table)
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'}, {out / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
