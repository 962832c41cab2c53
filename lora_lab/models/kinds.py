"""`model.kind` → the transformers auto class that builds or loads that kind of model."""

from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

AUTO_CLASSES = {
    "causal_lm": AutoModelForCausalLM,
    "sequence_classification": AutoModelForSequenceClassification,
    "masked_lm": AutoModelForMaskedLM,  # encoders on language-modelling tasks (pseudo-perplexity)
}
