"""Peak memory of one job, measured per job (several jobs can share a process under the basic launcher)."""

from __future__ import annotations

import threading

import psutil
import torch


class PeakMemory:
    """Samples this process's RSS in a background thread; on CUDA also reads max allocated, reset at start."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)

    def metrics(self) -> dict[str, float]:
        out = {"peak_rss_mb": self.peak_rss / 2**20}
        if torch.cuda.is_available():
            out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out
