"""Dynamic padding and length-grouped batches: pad each batch only to its own longest sequence."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from lora_lab.training.tokenize import IGNORE_INDEX, Features


def collate(batch: Sequence[Features], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f.input_ids) for f in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, feature in enumerate(batch):
        n = len(feature.input_ids)
        ids[row, :n] = torch.tensor(feature.input_ids)
        labels[row, :n] = torch.tensor(feature.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_order(lengths: Sequence[int], batch_size: int, *, seed: int, group_by_length: bool,
                mega_batch: int = 32) -> Iterator[list[int]]:
    """Endless shuffled batches of indices. With grouping, batches come from length-sorted windows of
    `mega_batch` batches, so padding waste shrinks while the order stays random across windows."""
    rng = random.Random(seed)
    while True:
        order = list(range(len(lengths)))
        rng.shuffle(order)
        if group_by_length:
            window = batch_size * mega_batch
            order = [i for start in range(0, len(order), window)
                     for i in sorted(order[start:start + window], key=lambda j: -lengths[j])]
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(batches)
        yield from batches
