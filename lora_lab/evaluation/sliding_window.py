"""Per-token negative log-likelihood of a long token stream with a strided sliding window.

A model sees at most `context` tokens, so the stream is cut into windows that start every `stride` tokens;
each window scores only the tokens no earlier window scored, so every token (after the first) is scored once,
predicted from at least `context - stride` tokens of history (all of them, in the first window). With
`context >= len(stream)` this is one plain forward over the whole text.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lora_lab.evaluation.progress import progress


@dataclass(frozen=True)
class Window:
    begin: int  # first token the model sees
    end: int  # one past the last token
    first_scored: int  # tokens [first_scored, end) are scored by this window

    @property
    def length(self) -> int:
        return self.end - self.begin


def windows(n_tokens: int, context: int, stride: int) -> list[Window]:
    """The windows covering tokens 1..n-1 (token 0 has no history to be predicted from)."""
    if not 0 < stride < context:
        raise ValueError(f"need 0 < stride < context (got stride={stride}, context={context})")
    out: list[Window] = []
    scored_up_to = 1  # stride < context keeps each window's first scored token after its first token
    for begin in range(0, n_tokens, stride):
        end = min(begin + context, n_tokens)
        if end > scored_up_to:
            out.append(Window(begin, end, scored_up_to))
            scored_up_to = end
        if end == n_tokens:
            break
    return out


@torch.no_grad()
def token_nll(
    model: torch.nn.Module,
    ids: Sequence[int],
    *,
    context: int,
    stride: int,
    batch_size: int,
    device: torch.device,
    desc: str = "perplexity",
) -> torch.Tensor:
    """nll[t - 1] = -log p(ids[t] | ids[max(0, ..):t]) for t = 1..len(ids)-1 (float64 on the CPU)."""
    nll = torch.full((max(len(ids) - 1, 0),), float("nan"), dtype=torch.float64)
    stream = torch.tensor(list(ids), dtype=torch.long)
    by_length: dict[int, list[Window]] = defaultdict(list)  # equal-length windows batch without padding
    for window in windows(len(ids), context, stride):
        by_length[window.length].append(window)
    batches = [group[i:i + batch_size] for group in by_length.values() for i in range(0, len(group), batch_size)]
    was_training = model.training
    model.eval()
    for batch in progress(batches, desc=desc):
        length = batch[0].length
        inputs = torch.stack([stream[w.begin:w.end] for w in batch]).to(device)
        keep = min(max(w.end - w.first_scored for w in batch) + 1, length)
        logits = model(input_ids=inputs, logits_to_keep=keep).logits[:, -keep:].float()
        losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), inputs[:, length - keep + 1:], reduction="none")
        for row, w in enumerate(batch):
            n = w.end - w.first_scored
            nll[w.first_scored - 1:w.end - 1] = losses[row, losses.shape[1] - n:].double().cpu()
    if was_training:
        model.train()
    return nll
