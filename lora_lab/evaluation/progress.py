"""Evaluation progress a user can watch where no terminal shows tqdm (SLURM, nohup, CI), like training's
(`training/progress.py`): lines appended to the run dir's `train.log`, and printed to stdout when stdout is not a
terminal, each flushed at once.

`jobs.steps.evaluate` opens an `EvalLog` around one evaluation and writes its first and last line
(`eval after: 0/40 examples`, `eval after: 40/40 examples accuracy 0.4250 examples/s 3.1 elapsed 0:00:13`); the
evaluators' batch loops go through `progress`, which is tqdm on a terminal as before and, inside an `EvalLog`,
also writes a line at each tenth of the batches (`eval after: batch 3/5 elapsed 0:00:08 eta 0:00:05`). Outside
one (a meta study scoring adapters, a test calling an evaluator) `progress` is plain tqdm.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from lora_lab.training.progress import LOG_FILE, clock

T = TypeVar("T")

PARTS = 10  # batch lines per evaluation, at most (each tenth of its batches)

_CURRENT: ContextVar[EvalLog | None] = ContextVar("lora_lab_eval_log", default=None)


class EvalLog:
    """The log lines of one evaluation: `eval <stage>: ...` (`eval: ...` for method=none's `eval` stage)."""

    def __init__(self, run_dir: Path, stage: str, *, echo: bool | None = None):
        self.path = Path(run_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.label = "eval" if stage == "eval" else f"eval {stage}"
        self.echo = (not sys.stdout.isatty()) if echo is None else echo  # a terminal has tqdm

    def write(self, text: str) -> None:
        line = f"{self.label}: {text}"
        with self.path.open("a") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, flush=True)


@contextmanager
def eval_log(run_dir: Path, stage: str, *, echo: bool | None = None) -> Iterator[EvalLog]:
    """Evaluator batch loops run inside write their progress to this log."""
    log = EvalLog(run_dir, stage, echo=echo)
    token = _CURRENT.set(log)
    try:
        yield log
    finally:
        _CURRENT.reset(token)


def progress(items: Sequence[T], *, desc: str) -> Iterator[T]:
    """`items` (an evaluation's batches) one by one: with a tqdm bar on a terminal, and inside `eval_log` a line
    each time another tenth of them is done (the last is left to the evaluation's closing line)."""
    bar = tqdm(items, desc=desc, dynamic_ncols=True, leave=False, disable=None)
    log = _CURRENT.get()
    if log is None:
        yield from bar
        return
    total, started, written = len(items), time.perf_counter(), 0
    for done, item in enumerate(bar, 1):
        yield item  # back here once the caller's loop body has run: batch `done` is finished
        part = done * PARTS // total
        if part > written and done < total:
            written = part
            elapsed = time.perf_counter() - started
            log.write(f"batch {done}/{total} elapsed {clock(elapsed)} eta {clock(elapsed / done * (total - done))}")
