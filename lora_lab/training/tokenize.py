"""Examples → token ids: the chat template when the model has one, and loss on answer tokens only."""

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
    labels: list[int]


def tokenize_for_training(
    tokenizer: PreTrainedTokenizerBase, example: Example, use_chat_template: bool, max_len: int
) -> Features:
    """Prompt tokens are masked (-100); target + EOS are learned. Long prompts are cut from the left."""
    prompt = prompt_ids(tokenizer, render_prompt(tokenizer, example, use_chat_template))
    target = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    target = target[:max_len]
    prompt = prompt[-(max_len - len(target)):] if max_len > len(target) else []
    return Features(prompt + target, [IGNORE_INDEX] * len(prompt) + target)
