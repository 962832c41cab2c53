"""On-disk cache of histograms and distance matrices, keyed by everything they depend on.

A distance of 0 reads as "most similar", so a half-filled matrix would silently poison every coefficient
computed from it. Arrays are therefore only ever written complete: computed fully in memory, written to a
temp file in the cache dir, fsync'd and renamed into place (`os.replace` is atomic on POSIX). A crash
leaves either no entry or the previous complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lora_lab.methods.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from lora_lab.utils.io import atomic_file

log = logging.getLogger("lora_lab")

KEY_LENGTH = 24


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_key(parts: Mapping[str, Any]) -> str:
    """Stable hash of a JSON-able description (sorted keys, so dict order never matters)."""
    return _digest(json.dumps(parts, sort_keys=True, default=str).encode())[:KEY_LENGTH]


def array_digest(array: np.ndarray) -> str:
    """Content hash of an array (dtype and shape included)."""
    array = np.ascontiguousarray(array)
    header = f"{array.dtype.str}{array.shape}".encode()
    return _digest(header + array.tobytes())[:KEY_LENGTH]


def file_fingerprint(path: str | Path, content: bool = False) -> str:
    """Cheap (size + mtime) or exact (sha256 of the bytes) identity of a file."""
    path = Path(path)
    if content:
        hasher = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
        return hasher.hexdigest()[:KEY_LENGTH]
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def bank_fingerprint(
    member_names: Sequence[str], adapter_dirs: Sequence[str | Path], content: bool = False
) -> str:
    """Identity of a bank: member names in order plus each adapter's config and weights fingerprints."""
    parts = [
        [
            name,
            file_fingerprint(Path(d) / ADAPTER_CONFIG, content),
            file_fingerprint(Path(d) / ADAPTER_WEIGHTS, content),
        ]
        for name, d in zip(member_names, adapter_dirs, strict=True)
    ]
    return cache_key({"members": parts})


def histogram_cache_parts(
    bank_id: str,
    dataset_references: Sequence[Any],
    representation: str,
    encoder: str,
    dimension: int,
    text_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What a bank's histogram matrix depends on: the bank, its datasets, the tokenizer (or encoder) and how
    examples are turned into text."""
    return {
        "kind": "histograms",
        "bank": bank_id,
        "datasets": list(dataset_references),
        "representation": representation,
        "encoder": encoder,
        "dimension": int(dimension),
        "text": dict(text_options or {}),
    }


def distance_cache_parts(
    metric: str,
    representation: str,
    targets: np.ndarray,
    members: np.ndarray,
    options: Mapping[str, Any] | None = None,
    bank_id: str | None = None,
) -> dict[str, Any]:
    """What a distance matrix depends on: the metric and its options and the exact input rows."""
    return {
        "kind": "distances",
        "metric": metric,
        "representation": representation,
        "options": dict(options or {}),
        "targets": array_digest(targets),
        "members": array_digest(members),
        "bank": bank_id,
    }


def atomic_save_array(path: str | Path, array: np.ndarray) -> Path:
    """Write `array` as .npy so that `path` is either absent/old or complete, never partial (the project's one
    atomic writer, `utils/io.atomic_file`: temp beside it, fsync, rename; a failed write is a StorageError)."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    return path


class ArrayCache:
    """`<root>/<kind>-<key>.npy` files; `get_or_compute` is the one entry point most callers need."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, parts: Mapping[str, Any]) -> Path:
        return self.root / f"{parts.get('kind', 'array')}-{cache_key(parts)}.npy"

    def load(self, parts: Mapping[str, Any]) -> np.ndarray | None:
        path = self.path(parts)
        if not path.is_file():
            return None
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):  # unreadable entry (truncated, or an incompatible numpy): recompute
            log.warning("cache entry %s unreadable: recomputing it", path)
            return None
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            log.warning("cache entry %s holds non-finite values: recomputing it", path)
            return None
        return array

    def save(self, parts: Mapping[str, Any], array: np.ndarray) -> Path:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():
            raise ValueError(f"refusing to cache {parts.get('kind', 'array')} containing NaN")
        return atomic_save_array(self.path(parts), array)

    def get_or_compute(self, parts: Mapping[str, Any], compute: Callable[[], np.ndarray]) -> np.ndarray:
        """Cached array, or `compute()` saved atomically once it has returned completely."""
        cached = self.load(parts)
        if cached is not None:
            return cached
        array = np.asarray(compute())
        self.save(parts, array)
        return array
