"""`results.png`: a grouped bar chart of the metric, one group per row label, one bar per column label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lora_lab.report.collect import JobRecord
from lora_lab.report.table import pivot


def bar_chart(records: Sequence[JobRecord], rows: Sequence[str], cols: Sequence[str], metric: str, path: Path,
              title: str | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (SLURM nodes, CI)
    import matplotlib.pyplot as plt

    row_labels, col_labels, cells = pivot(records, rows, cols, metric)
    width = 0.8 / max(len(col_labels), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(row_labels) * max(1, len(col_labels)) ** 0.5 + 2), 3.6))
    for j, col in enumerate(col_labels):
        xs = [i + (j - (len(col_labels) - 1) / 2) * width for i in range(len(row_labels))]
        heights = []
        for row, x in zip(row_labels, xs, strict=True):
            cell = cells.get((row, col))
            mean = cell.mean if cell is not None else None
            heights.append(mean if mean is not None else 0.0)
            if cell is not None and mean is None:  # a failed / missing job is marked, not dropped
                ax.text(x, 0, cell.text(), rotation=90, ha="center", va="bottom", fontsize=7, color="crimson")
        ax.bar(xs, heights, width=width, label=col if cols else None)
    ax.set_xticks(range(len(row_labels)), row_labels, rotation=20 if len(row_labels) > 4 else 0)
    ax.set_ylabel(metric)
    ax.set_xlabel(" × ".join(rows))
    if cols:
        ax.legend(title=" × ".join(cols), fontsize=8)
    ax.set_title(title or metric, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
