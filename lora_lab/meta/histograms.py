"""Dataset representations: what a dataset "is" when we measure how far it is from a bank task.

`tokens` (the paper's choice) is the token-ID frequency histogram of the dataset under the base model's
tokenizer; `embedding` is the mean of a sentence encoder's vectors. Both return one float64 row per dataset,
so a bank is just a matrix and every distance is a many-vs-many matrix computation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np

from lora_lab.config.errors import ConfigError
from lora_lab.registry import Registry

EmbedFn = Callable[[list[str]], np.ndarray]

REPRESENTATIONS: Registry[Callable[..., np.ndarray]] = Registry(
    "dataset representation", "method.representation"
)


def example_text(
    example: Mapping[str, Any], input_field: str = "input", output_field: str = "output", separator: str = " "
) -> str:
    """Input plus the first reference output: what the adapter was trained to read and write."""
    output = example.get(output_field, "")
    if isinstance(output, (list, tuple)):
        output = output[0] if output else ""
    return f"{example.get(input_field, '')}{separator}{output}"


def _batches(texts: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(islice(iterator, batch_size)):
        yield batch


def _batch_token_ids(tokenizer: Any, batch: list[str]) -> list[list[int]]:
    """Token ids of a batch, without special tokens (BOS/EOS would dominate every histogram equally)."""
    if hasattr(tokenizer, "encode_batch"):  # a bare `tokenizers.Tokenizer`
        return [encoding.ids for encoding in tokenizer.encode_batch(batch, add_special_tokens=False)]
    return tokenizer(batch, add_special_tokens=False)["input_ids"]  # transformers: the fast (Rust) path


@REPRESENTATIONS.register("tokens")
def token_histogram(
    texts: Iterable[str], tokenizer: Any, vocab_size: int, batch_size: int = 1024
) -> np.ndarray:
    """Token-ID counts of all texts, shape (vocab_size,), float64.

    Counts, not frequencies: histograms of several datasets can be added, and every distance normalises.
    """
    if vocab_size <= 0:
        raise ConfigError("tokenizer vocab_size", vocab_size, "must be a positive integer")
    counts = np.zeros(vocab_size, dtype=np.int64)
    for batch in _batches(texts, batch_size):
        ids = np.fromiter((i for row in _batch_token_ids(tokenizer, batch) for i in row), dtype=np.int64)
        if ids.size == 0:
            continue
        if ids.min() < 0 or ids.max() >= vocab_size:
            bad = int(ids.max() if ids.max() >= vocab_size else ids.min())
            raise ConfigError(
                "tokenizer vocab_size", vocab_size, f"tokenizer produced token id {bad}, outside [0, vocab_size)"
            )
        counts += np.bincount(ids, minlength=vocab_size)
    return counts.astype(np.float64)


@REPRESENTATIONS.register("embedding")
def mean_embedding(texts: Iterable[str], embed: EmbedFn, batch_size: int = 256) -> np.ndarray:
    """Mean sentence-encoder vector of all texts, float64; `embed(list[str]) -> (n, dim)` is supplied by the caller."""
    total: np.ndarray | None = None
    count = 0
    for batch in _batches(texts, batch_size):
        vectors = np.asarray(embed(batch), dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise ValueError(
                f"embed() returned shape {vectors.shape} for {len(batch)} texts; expected (n, dim)"
            )
        total = vectors.sum(axis=0) if total is None else total + vectors.sum(axis=0)
        count += len(batch)
    if total is None:
        raise ValueError("cannot embed an empty dataset")
    return total / count


def represent_dataset(representation: str, texts: Iterable[str], **dependencies: Any) -> np.ndarray:
    """One row for one dataset; `dependencies` are `tokenizer`+`vocab_size` (tokens) or `embed` (embedding)."""
    return REPRESENTATIONS.get(representation)(texts, **dependencies)


def represent_datasets(
    representation: str, datasets: Sequence[Iterable[str]], **dependencies: Any
) -> np.ndarray:
    """Stack one row per dataset into the (n_datasets, dim) matrix that distances work on."""
    return np.stack([represent_dataset(representation, texts, **dependencies) for texts in datasets])


def normalize_rows(histograms: np.ndarray) -> np.ndarray:
    """Counts → probability rows; an all-zero row is an empty dataset and has no distribution."""
    histograms = np.asarray(histograms, dtype=np.float64)
    if histograms.ndim != 2:
        raise ValueError(f"expected a (n, vocab) matrix of histograms, got shape {histograms.shape}")
    if (histograms < 0).any():
        raise ValueError("histograms must be non-negative counts")
    totals = histograms.sum(axis=1, keepdims=True)
    empty = np.flatnonzero(totals[:, 0] <= 0)
    if empty.size:
        raise ValueError(f"histogram rows {empty.tolist()[:10]} are empty (no tokens); cannot normalise")
    return histograms / totals
