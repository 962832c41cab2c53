"""Report figures: `results.png` (a grouped bar chart of one metric, or one panel per metric when several are
asked for) and `loss_curves.png` (every job's per-step train loss, one line per job)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lora_lab.report.collect import JobRecord
from lora_lab.report.table import format_number, metric_cells, pivot


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display (SLURM nodes, CI)
    import matplotlib.pyplot as plt

    return plt


def bar_chart(records: Sequence[JobRecord], rows: Sequence[str], cols: Sequence[str], metric: str, path: Path,
              title: str | None = None) -> None:
    plt = _pyplot()
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


def metric_panels(records: Sequence[JobRecord], keys: Sequence[str], metrics: Sequence[str], path: Path,
                  title: str | None = None) -> None:
    """Several metrics side by side, one panel each: their scales differ (bytes, seconds, accuracy), so one
    shared axis would flatten all but the largest."""
    plt = _pyplot()
    groups, cells = metric_cells(records, keys, metrics)
    labels = [", ".join(g) or "all" for g in groups]
    ncols = min(len(metrics), 4)
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(3.0, 0.5 * len(labels) + 1.5) * ncols, 3.2 * nrows),
                             squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for i, group in enumerate(groups):
            cell = cells[(group, metric)]
            if cell.mean is None:  # a failed / missing job is marked, not dropped
                ax.text(i, 0, cell.text() or "n/a", rotation=90, ha="center", va="bottom", fontsize=7,
                        color="crimson")
            else:
                ax.bar(i, cell.mean, color=f"C{i % 10}")
                ax.text(i, cell.mean, format_number(cell.mean), ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(metric, fontsize=9)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def loss_curves(curves: dict[str, list[float]], path: Path, title: str | None = None) -> None:
    """One line per job (label → per-step train loss); non-finite steps leave a gap rather than a spike."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, losses in curves.items():
        ax.plot(range(1, len(losses) + 1), [x if math.isfinite(x) else math.nan for x in losses], label=label,
                linewidth=1.2)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("train loss")
    ax.legend(fontsize=7)
    ax.set_title(title or "train loss", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
