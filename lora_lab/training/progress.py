"""Progress a user can watch where no terminal shows tqdm (SLURM, nohup, CI): every `train.log_every` steps one
line — step/max, loss, lr, tokens/s, elapsed, ETA — appended to `<run dir>/train.log` (always, so a run dir
tells how its training went) and printed to stdout when stdout is not a terminal. Each line is flushed at
once: a job's output file is read while the job runs."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

LOG_FILE = "train.log"


def clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


class ProgressLog:
    """A training-step callback (`train(on_step=...)`); rank 0 only."""

    def __init__(self, run_dir: Path, every: int, max_steps: int, *, echo: bool | None = None):
        self.path = Path(run_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.every, self.max_steps = max(int(every), 1), int(max_steps)
        self.echo = (not sys.stdout.isatty()) if echo is None else echo  # a terminal has tqdm

    def line(self, state, lr: float | None) -> str:
        per_step = state.seconds / state.step if state.step else 0.0
        rate = state.tokens / state.seconds if state.seconds > 0 else 0.0
        lr_part = f" lr {lr:.2e}" if lr is not None else ""
        loss = state.losses[-1] if state.losses else None
        loss_part = f"{loss:.4f}" if isinstance(loss, int | float) else "n/a"  # a skipped non-finite step
        return (f"step {state.step}/{self.max_steps} loss {loss_part}{lr_part} tokens/s {rate:.1f} "
                f"elapsed {clock(state.seconds)} eta {clock(per_step * (self.max_steps - state.step))}")

    def on_step(self, state, optimization) -> None:
        if state.step % self.every and state.step != self.max_steps:
            return
        text = self.line(state, optimization.lr if optimization is not None else None)
        with self.path.open("a") as f:
            f.write(text + "\n")
        if self.echo:
            print(text, flush=True)
