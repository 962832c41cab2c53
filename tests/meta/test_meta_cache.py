import os

import numpy as np
import pytest

from lora_lab.config.errors import StorageError
from lora_lab.meta import distances as distances_module
from lora_lab.meta.bank import load_bank
from lora_lab.meta.cache import ArrayCache, bank_fingerprint, cache_key, distance_cache_parts
from lora_lab.meta.distances import pairwise_distance

HISTOGRAMS = np.array([[3.0, 1.0, 0.0, 2.0], [0.0, 1.0, 1.0, 1.0], [5.0, 0.0, 0.0, 1.0]])


def test_get_or_compute_caches_complete_arrays(tmp_path):
    cache = ArrayCache(tmp_path)
    parts = distance_cache_parts("js", "tokens", HISTOGRAMS, HISTOGRAMS)
    calls = []

    def compute():
        calls.append(1)
        return pairwise_distance("js", HISTOGRAMS, HISTOGRAMS)

    first = cache.get_or_compute(parts, compute)
    second = cache.get_or_compute(parts, compute)
    np.testing.assert_array_equal(first, second)
    assert len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == [cache.path(parts).name]


def test_crash_mid_computation_leaves_no_cache_file(tmp_path, monkeypatch):
    """A distance matrix that dies half-way must not be cached: its zeros would read as 'most similar'."""
    cache = ArrayCache(tmp_path)
    parts = distance_cache_parts("wd", "tokens", HISTOGRAMS, HISTOGRAMS)
    real_cdist = distances_module.torch.cdist
    blocks_done = []

    def dying_cdist(*args, **kwargs):
        if blocks_done:
            raise RuntimeError("simulated crash after the first block")
        blocks_done.append(1)
        return real_cdist(*args, **kwargs)

    monkeypatch.setattr(distances_module, "_WD_ROWS_PER_BLOCK", 1)
    monkeypatch.setattr(distances_module.torch, "cdist", dying_cdist)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.get_or_compute(parts, lambda: pairwise_distance("wd", HISTOGRAMS, HISTOGRAMS))
    assert blocks_done == [1]
    assert list(tmp_path.iterdir()) == []  # neither the entry nor a temp file


def test_crash_while_writing_leaves_no_entry(tmp_path, monkeypatch):
    cache = ArrayCache(tmp_path)
    parts = {"kind": "histograms", "bank": "b"}

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(StorageError, match="histograms-.*npy: cannot write \\(disk full\\)"):  # one line, as any write
        cache.save(parts, HISTOGRAMS)
    assert list(tmp_path.iterdir()) == []


def test_nan_is_never_cached(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        ArrayCache(tmp_path).save({"kind": "distances"}, np.array([[0.0, np.nan]]))
    assert list(tmp_path.iterdir()) == []


def test_keys_change_with_what_the_array_depends_on(make_bank):
    base = distance_cache_parts("js", "tokens", HISTOGRAMS, HISTOGRAMS)
    assert cache_key(base) == cache_key(dict(reversed(list(base.items()))))  # order-free
    assert cache_key(base) != cache_key(distance_cache_parts("kl", "tokens", HISTOGRAMS, HISTOGRAMS))
    assert cache_key(base) != cache_key(distance_cache_parts("js", "tokens", HISTOGRAMS + 1, HISTOGRAMS))
    assert cache_key(base) != cache_key(
        distance_cache_parts("kl", "tokens", HISTOGRAMS, HISTOGRAMS, options={"epsilon": 1e-6})
    )
    root, _ = make_bank(3)
    bank = load_bank(root)
    quick = bank_fingerprint(bank.names, bank.adapter_dirs)
    exact = bank_fingerprint(bank.names, bank.adapter_dirs, content=True)
    assert quick != bank_fingerprint(bank.names[::-1], bank.adapter_dirs[::-1])
    weights = bank.adapter_dirs[0] / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size; content differs
    weights.write_bytes(bytes(data))
    assert bank_fingerprint(bank.names, bank.adapter_dirs, content=True) != exact
