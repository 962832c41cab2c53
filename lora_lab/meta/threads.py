"""Intra-op thread control for loops of many small or mid-sized torch ops.

Split over OpenMP threads, such ops mostly pay barrier costs, and they slow down by 10-1000x when other
processes occupy the cores (a descheduled team member stalls every barrier). They run faster and
predictably on one thread, or one thread per worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Set torch's intra-op thread count for a block, restoring it afterwards (process-wide setting)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
