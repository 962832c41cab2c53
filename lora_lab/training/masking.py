"""Masked-LM training features for encoders on language-modelling text (BERT's recipe, static masks).

An encoder cannot learn next-token prediction; it learns to fill masked tokens. 15% of the tokens are picked
(80% replaced by the mask token, 10% by a random token, 10% kept) and only they carry a label. The choice is
seeded by the text itself, so the same text gets the same masks in every run and on every rank.
"""

from __future__ import annotations

import random
import zlib

from transformers import PreTrainedTokenizerBase

from lora_lab.tasks.base import Example
from lora_lab.training.tokenize import IGNORE_INDEX, Features, encoder_max_length

MASK_FRACTION = 0.15


def tokenize_for_masked_lm(
    tokenizer: PreTrainedTokenizerBase, example: Example, use_chat_template: bool, max_len: int
) -> Features:
    if tokenizer.mask_token_id is None:
        raise ValueError("model.kind=masked_lm needs a tokenizer with a mask token")
    text = example.target if example.language_modeling else f"{example.prompt} {example.target}"
    ids = tokenizer(text, truncation=True, max_length=encoder_max_length(tokenizer, max_len))["input_ids"]
    special = set(tokenizer.all_special_ids)
    rng = random.Random(zlib.crc32(text.encode("utf-8")))
    inputs, labels = list(ids), [IGNORE_INDEX] * len(ids)
    candidates = [i for i, token in enumerate(ids) if token not in special]
    for i in rng.sample(candidates, max(1, round(MASK_FRACTION * len(candidates)))) if candidates else []:
        labels[i] = ids[i]
        roll = rng.random()
        inputs[i] = tokenizer.mask_token_id if roll < 0.8 else rng.randrange(len(tokenizer)) if roll < 0.9 else ids[i]
    return Features(inputs, labels)
