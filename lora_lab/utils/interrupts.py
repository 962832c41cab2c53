"""SIGINT/SIGTERM as a job status instead of a traceback: the signal becomes `Interrupted`, which `run_job`
records as `status: interrupted` (with the last step, and a checkpoint when checkpointing is on) and the CLI
turns into exit code 130/143.

Outside the training loop a signal raises at once. Inside it (`deferred`), the first signal only marks the stop
and the loop raises at the end of the current optimizer step, so a checkpoint taken at the interrupt holds a
whole step, never half an optimizer update; a second signal raises at once. Handlers are installed only over
the default ones, so a launcher's own handling (submitit's SLURM preemption and requeue) is left as it is.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lora_lab.config.errors import Interrupted

log = logging.getLogger("lora_lab")

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DEFAULTS = (signal.SIG_DFL, signal.default_int_handler)
_state = {"deferring": False, "pending": None}


def _on_signal(signum: int, frame) -> None:
    if _state["deferring"] and _state["pending"] is None:
        _state["pending"] = signum
        log.warning("%s: stopping after this training step (send it again to stop now)", signal.Signals(signum).name)
        return
    raise Interrupted(signum)


@contextmanager
def interrupts_as_status() -> Iterator[None]:
    """For the duration of a job: SIGINT/SIGTERM raise `Interrupted` (main thread only; previous handlers come
    back afterwards)."""
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if previous in _DEFAULTS:
                installed[sig] = previous
                signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)


@contextmanager
def deferred() -> Iterator[None]:
    """The training loop's region: a signal waits for the step boundary (see `pending`)."""
    _state["deferring"], _state["pending"] = True, None
    try:
        yield
        late = _state["pending"]  # arrived during the last step, after the loop's own check
        if late is not None:
            raise Interrupted(late)
    finally:
        _state["deferring"], _state["pending"] = False, None


def pending() -> int | None:
    """The signal number waiting for the step boundary, if any."""
    return _state["pending"]
