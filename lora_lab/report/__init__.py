"""`lora-lab-report <multirun dir>`: every job of a sweep → results.csv, a Markdown table and a bar chart.

Jobs are enumerated from the sweep itself (its numeric job dirs and the overrides in `multirun.yaml`), never only
from the `metrics.json` files that exist, so a failed or never-started job shows up as `failed` / `missing`.
"""

from lora_lab.report.collect import JobRecord, collect

__all__ = ["JobRecord", "collect"]
