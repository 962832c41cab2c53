"""Dynamic padding and length-grouped batches: pad each batch only to its own longest sequence."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch

from lora_lab.training.tokenize import IGNORE_INDEX, Features


def collate(batch: Sequence[Features], pad_id: int, *, left: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the batch's longest row. Left padding puts every answer at the end (see training/loss.py).
    Classification features (`label` set) get one class id per row as `labels`, which a SeqCls head expects."""
    classify = batch[0].label is not None
    width = max(len(f.input_ids) for f in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, feature in enumerate(batch):
        n = len(feature.input_ids)
        span = slice(width - n, width) if left else slice(0, n)
        ids[row, span] = torch.tensor(feature.input_ids)
        if not classify:
            labels[row, span] = torch.tensor(feature.labels)
        mask[row, span] = 1
    if classify:
        labels = torch.tensor([f.label for f in batch], dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if left:
        out["padding_side"] = "left"
    return out


def count_targets(labels: torch.Tensor) -> int:
    """What a micro-batch's mean loss is taken over: supervised next-token positions, or rows of class ids."""
    return int(labels.shape[0]) if labels.dim() == 1 else int((labels[:, 1:] != IGNORE_INDEX).sum())


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


def micro_batches(batch: list[int], lengths: Sequence[int], size: int | None) -> list[list[int]]:
    """One drawn batch split into micro-batches of at most `size` rows (None: the batch whole), longest rows
    together so each micro-batch pads less. The step's loss is normalised over the whole batch's answer
    tokens, so the gradient is the whole batch's; only the activations alive at once shrink."""
    if not size or size >= len(batch):
        return [batch]
    ordered = sorted(batch, key=lambda i: -lengths[i])
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]
