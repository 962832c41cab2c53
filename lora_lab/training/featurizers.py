"""Which training features a model kind learns from: `model.kind` → featurizer (Example → token ids + labels)."""

from __future__ import annotations

from collections.abc import Callable

from transformers import PreTrainedTokenizerBase

from lora_lab.config.errors import ConfigError
from lora_lab.tasks.base import Example
from lora_lab.training.masking import tokenize_for_masked_lm
from lora_lab.training.tokenize import Features, tokenize_for_classification, tokenize_for_training

Featurizer = Callable[[PreTrainedTokenizerBase, Example, bool, int], Features]
FEATURIZERS: dict[str, Featurizer] = {
    "causal_lm": tokenize_for_training,
    "sequence_classification": tokenize_for_classification,
    "masked_lm": tokenize_for_masked_lm,
}


def featurizer_for(model_kind: str) -> Featurizer:
    if model_kind not in FEATURIZERS:
        raise ConfigError("model.kind", model_kind, "no training features for this model kind", choices=list(FEATURIZERS))
    return FEATURIZERS[model_kind]
