"""Causal-LM loss computed only where it is needed.

Training masks the prompt, so only answer positions contribute to the loss — yet a plain forward projects
every position onto the vocabulary (for SmolLM2, 49k × 576 per token: a fifth of the model's compute, and
the largest activation). With left-padded batches every row's answer sits at the end, so asking the model
for the logits of the last K positions (`logits_to_keep`) covers every answer token and skips the rest.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lora_lab.training.tokenize import IGNORE_INDEX


def answer_window(labels: torch.Tensor) -> int:
    """Smallest K such that the last K positions hold every supervised label (plus the one predicting it)."""
    supervised = labels != IGNORE_INDEX
    if not supervised.any():
        return 1
    width = labels.shape[1]
    first = torch.where(supervised.any(1), supervised.float().argmax(1), torch.full_like(labels[:, 0], width))
    return int(width - first.min()) + 1


def position_ids_for(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that start at 0 on each row's first real token, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean token cross-entropy over supervised positions of a LEFT-padded batch."""
    labels = batch["labels"]
    keep = min(answer_window(labels), labels.shape[1])
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
        position_ids=position_ids_for(batch["attention_mask"]), logits_to_keep=keep,
    ).logits
    targets = labels[:, labels.shape[1] - keep + 1:]
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


def model_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], *, answer_only_logits: bool) -> torch.Tensor:
    if answer_only_logits and batch.get("padding_side") == "left":
        return causal_lm_loss(model, {k: v for k, v in batch.items() if k != "padding_side"})
    return model(**{k: v for k, v in batch.items() if k != "padding_side"}).loss
