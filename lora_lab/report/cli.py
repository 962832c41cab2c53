"""`lora-lab-report <multirun dir> [--rows method --cols task --metric score]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_lab.report.collect import collect
from lora_lab.report.plot import bar_chart
from lora_lab.report.table import markdown, write_csv
from lora_lab.utils.io import atomic_write_text


def _keys(text: str) -> list[str]:
    return [k.strip() for k in text.split(",") if k.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="lora-lab-report",
        description="Summarise a lora-lab multirun dir: results.csv, results.md (table) and results.png (plot).")
    parser.add_argument("sweep_dir", type=Path, help="the multirun dir (with multirun.yaml and 0/, 1/, ...)")
    parser.add_argument("--rows", default="method", help="comma-separated override/metrics keys for table rows")
    parser.add_argument("--cols", default="task", help="comma-separated keys for table columns ('' for one)")
    parser.add_argument("--metric", default="score", help="metrics.json key to show (default: score)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the sweep dir)")
    return parser.parse_args(argv)


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
    out.mkdir(parents=True, exist_ok=True)
    rows, cols = _keys(args.rows), _keys(args.cols)
    write_csv(records, out / "results.csv")
    table = markdown(records, rows, cols, args.metric)
    atomic_write_text(out / "results.md", table)
    bar_chart(records, rows, cols, args.metric, out / "results.png", title=f"{args.metric}: {args.sweep_dir.name}")
    print(table)
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'}, {out / 'results.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
