"""Class scores from a sequence-classification head (encoders such as MiniLM), in length-sorted batches.

Inputs are featurised exactly as for training (`tokenize_for_classification`) and padded by the same
`collate`, so evaluation sees what training saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from lora_lab.evaluation.progress import progress
from lora_lab.tasks.base import Example
from lora_lab.training.batching import collate
from lora_lab.training.tokenize import tokenize_for_classification


@torch.no_grad()
def head_logits(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    *,
    max_len: int,
    batch_size: int,
    device: torch.device,
    desc: str = "classify",
) -> list[list[float]]:
    features = [tokenize_for_classification(tokenizer, ex, False, max_len) for ex in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(features)), key=lambda i: -len(features[i].input_ids))
    out: list[list[float]] = [[] for _ in features]
    was_training = model.training
    model.eval()
    for start in progress(range(0, len(order), batch_size), desc=desc):
        index = order[start:start + batch_size]
        batch = collate([features[i] for i in index], pad_id)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        for i, row in zip(index, logits.float().tolist(), strict=True):
            out[i] = row
    if was_training:
        model.train()
    return out
