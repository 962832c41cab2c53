"""`model.kind`: what a kind of model is, in one record per kind, so code asks a question of the kind
(`kind_of(cfg).has_head`) instead of comparing its name in many places."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSequenceClassification

from lora_lab.registry import Registry


@dataclass(frozen=True)
class ModelKind:
    name: str
    auto_class: type  # the transformers auto class that builds or loads it
    peft_task_type: str | None  # peft's task wrapper (None: the plain PeftModel; a masked LM needs no wrapper)
    # a fresh classification head on top of the pretrained body: sized by num_labels, trained in full beside the
    # adapter and saved with it, never quantised
    has_head: bool = False
    causal: bool = False  # predicts the next token: generates, and its loss needs only the answer positions' logits
    eval_modes: tuple[str, ...] = ("generate", "choice", "perplexity")  # the task eval modes it can run


KINDS: Registry[ModelKind] = Registry("model kind", "model.kind")
for kind in (
    ModelKind("causal_lm", AutoModelForCausalLM, "CAUSAL_LM", causal=True),
    ModelKind("sequence_classification", AutoModelForSequenceClassification, "SEQ_CLS", has_head=True,
              eval_modes=("choice",)),
    # encoders on language-modelling tasks: pseudo-perplexity only
    ModelKind("masked_lm", AutoModelForMaskedLM, None, eval_modes=("perplexity",)),
):
    KINDS.add(kind.name, kind)


def kind_of(cfg) -> ModelKind:
    """The kind of the configured model (`cfg` is the whole config)."""
    return KINDS.get(cfg.model.kind)
