"""Intra-op thread control for loops of many small torch ops.

Such loops mostly pay OpenMP barrier costs per op when split over threads, and degrade by orders of
magnitude when other processes occupy the cores; they run faster on one thread (or one thread per worker).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

SMALL_OP_ELEMENTS = 1 << 18  # below this many elements per op, one thread wins


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def threads_for(elements_per_op: int, available: int | None = None) -> int:
    """One thread for small ops, all `available` (default: the current setting) otherwise."""
    return 1 if elements_per_op < SMALL_OP_ELEMENTS else (available or torch.get_num_threads())
