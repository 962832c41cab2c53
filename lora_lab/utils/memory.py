"""Peak memory of one job, measured per job (several jobs can share a process under the basic launcher)."""

from __future__ import annotations

import threading

import psutil
import torch


def anonymous_rss() -> int | None:
    """Bytes of this process's private (anonymous) resident memory, from /proc (Linux), else None.

    RSS also counts file pages: weights memory-mapped from safetensors are resident file pages once touched,
    shared with the page cache and dropped by the kernel under pressure. Anonymous RSS is what the process
    holds exclusively (tensors it allocated, quantised weights, activations)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Samples this process's RSS (and anonymous RSS) in a background thread; on CUDA also reads max
    allocated, reset at start."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak_rss = 0
        self.peak_anon: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
        anon = anonymous_rss()
        if anon is not None:
            self.peak_anon = max(self.peak_anon or 0, anon)

    def __enter__(self) -> PeakMemory:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def metrics(self) -> dict[str, float]:
        out = {"peak_rss_mb": self.peak_rss / 2**20}
        if self.peak_anon is not None:
            out["peak_anon_rss_mb"] = self.peak_anon / 2**20
        if torch.cuda.is_available():
            out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out
