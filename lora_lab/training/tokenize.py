"""Examples → token ids: the chat template when the model has one, and loss on answer tokens only.

Three shapes, picked by `featurizers.featurizer_for(model kind)`: prompt + answer for causal LMs (raw text for
language-modelling examples), text + class id for sequence-classification heads (here), and masked text for
masked-LM encoders (`masking.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from lora_lab.tasks.base import Example

IGNORE_INDEX = -100


def render_prompt(tokenizer: PreTrainedTokenizerBase, example: Example, use_chat_template: bool) -> str:
    """The text the model sees before its answer: chat-formatted for instruct models, plain otherwise."""
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        messages = []
        if example.system:
            messages.append({"role": "system", "content": example.system})
        messages.append({"role": "user", "content": example.prompt})
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prefix = f"{example.system}\n\n" if example.system else ""
    return f"{prefix}{example.prompt}\nAnswer: "


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=True)["input_ids"]


@dataclass
class Features:
    input_ids: list[int]
    labels: list[int]  # per-token targets (causal LM); empty for classification
    label: int | None = None  # the class id, for sequence-classification heads


def tokenize_for_training(
    tokenizer: PreTrainedTokenizerBase, example: Example, use_chat_template: bool, max_len: int
) -> Features:
    """Prompt tokens are masked (-100); target + EOS are learned. Long prompts are cut from the left.
    Language-modelling text has no prompt and no EOS (it is a slice of a longer stream): every token is learned."""
    if example.language_modeling:
        ids = tokenizer(example.target, add_special_tokens=False)["input_ids"][:max_len]
        return Features(ids, list(ids))
    prompt = prompt_ids(tokenizer, render_prompt(tokenizer, example, use_chat_template))
    target = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    target = target[:max_len]
    prompt = prompt[-(max_len - len(target)):] if max_len > len(target) else []
    return Features(prompt + target, [IGNORE_INDEX] * len(prompt) + target)


def encoder_max_length(tokenizer: PreTrainedTokenizerBase, max_len: int) -> int:
    """Encoders have a hard position limit (512 for BERT-style models); the tokenizer records it."""
    limit = getattr(tokenizer, "model_max_length", None)
    return min(max_len, int(limit)) if isinstance(limit, int) and 0 < limit < 1_000_000 else max_len


def tokenize_for_classification(
    tokenizer: PreTrainedTokenizerBase, example: Example, use_chat_template: bool, max_len: int
) -> Features:
    """The bare input text (no instruction: the head does not read one) and its class id; long text is cut."""
    if example.label is None:
        raise ValueError(f"example has no class label (task is not a classification task): {example.prompt[:80]!r}")
    text = example.text if example.text is not None else example.prompt
    ids = tokenizer(text, truncation=True, max_length=encoder_max_length(tokenizer, max_len))["input_ids"]
    return Features(ids, [], label=int(example.label))
