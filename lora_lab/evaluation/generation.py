"""Batched greedy generation: left padding, KV cache, length-sorted batches, stop on EOS or stop strings.

`generate` derives position ids from the attention mask, so left padding does not shift a row's positions, and
it ends a batch as soon as every row is finished (EOS or a stop string), not at `max_new_tokens`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from lora_lab.evaluation.progress import progress


class StopOnStrings(StoppingCriteria):
    """Marks a row done once its generated text contains a stop string (any tokenizer, no vocab scan).

    Only the last `window` generated tokens are decoded per step, so the cost does not grow with length."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_strings: Sequence[str], prompt_width: int,
                 window: int = 16):
        self.tokenizer, self.stop_strings = tokenizer, list(stop_strings)
        self.prompt_width, self.window = prompt_width, window

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        tails = input_ids[:, max(self.prompt_width, input_ids.shape[1] - self.window):]
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [any(stop in text for stop in self.stop_strings) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def eos_ids(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokenizer's EOS plus any the model's generation config lists (chat models often end turns with one
    of several tokens; passing only the tokenizer's would let the others run on to `max_new_tokens`)."""
    ids = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for token in configured if isinstance(configured, list | tuple) else [configured]:
        if token is not None and token not in ids:
            ids.append(int(token))
    return ids


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    cut = len(text)
    for stop in stop_strings:
        position = text.find(stop)
        if position >= 0:
            cut = min(cut, position)
    return text[:cut]


@torch.no_grad()
def generate_batched(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    stop_strings: Sequence[str] = (),
    device: torch.device | None = None,
    desc: str = "generate",
    before_batch: Callable[[list[int]], None] | None = None,
) -> list[str]:
    """Greedy completions for token-id prompts, returned in the input order.

    Prompts are sorted longest-first so each batch pads little and the first batch shows the peak memory.
    Generation of a batch ends when every row has produced EOS or one of `stop_strings`. `before_batch` gets
    the input positions of each batch's rows before it runs (a row-mixed bank sets its coefficients there).
    """
    device = device or next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop_ids = eos_ids(model, tokenizer)
    was_training = model.training
    model.eval()
    for start in progress(range(0, len(order), batch_size), desc=desc):
        index = order[start:start + batch_size]
        if before_batch is not None:
            before_batch(index)
        width = max(len(prompts[i]) for i in index)
        ids = torch.full((len(index), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(index), width), dtype=torch.long)
        for row, i in enumerate(index):
            ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]):] = 1
        extra = {"stopping_criteria": StoppingCriteriaList([StopOnStrings(tokenizer, stop_strings, width)])} \
            if stop_strings else {}
        generated = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=1, pad_token_id=pad_id, eos_token_id=stop_ids, use_cache=True,
            # plain greedy: a hub generation_config's sampling-era penalties must not leak into evaluation
            repetition_penalty=1.0, no_repeat_ngram_size=0, **extra,
        )
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for i, text in zip(index, texts, strict=True):
            outputs[i] = cut_at_stop(text, stop_strings).strip()
    if was_training:
        model.train()
    return outputs
