"""Masked-LM pseudo-perplexity (Salazar et al., 2020): how an encoder scores a token stream.

An encoder has no left-to-right likelihood, so each token is masked in turn and scored from both sides:
PPPL = exp(mean over tokens of −log p(token | the rest of its window)). The windows are the sliding windows of
the causal scorer (`sliding_window.windows`), so the same tokens are scored and charged to the same documents;
each window is wrapped in the tokenizer's [CLS] … [SEP]. One forward per scored token: cap the stream with
`task.max_eval_tokens` for quick runs. Not comparable with a causal LM's perplexity (it sees the right context).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lora_lab.evaluation.progress import progress
from lora_lab.evaluation.sliding_window import windows


@torch.no_grad()
def masked_token_nll(
    model: torch.nn.Module,
    ids: Sequence[int],
    *,
    context: int,
    stride: int,
    batch_size: int,
    device: torch.device,
    desc: str = "pseudo-perplexity",
    mask_id: int,
    wrap: tuple[list[int], list[int]] = ([], []),
) -> torch.Tensor:
    """nll[t - 1] = −log p(ids[t] | its window with ids[t] masked), for t = 1..len(ids)-1 (like `token_nll`)."""
    nll = torch.full((max(len(ids) - 1, 0),), float("nan"), dtype=torch.float64)
    stream = torch.tensor(list(ids), dtype=torch.long)
    prefix, suffix = torch.tensor(wrap[0], dtype=torch.long), torch.tensor(wrap[1], dtype=torch.long)
    jobs = [(w, t) for w in windows(len(ids), context, stride) for t in range(w.first_scored, w.end)]
    was_training = model.training
    model.eval()
    for start in progress(range(0, len(jobs), batch_size), desc=desc):
        chunk = jobs[start:start + batch_size]
        width = max(w.length for w, _ in chunk) + len(prefix) + len(suffix)
        inputs = torch.zeros((len(chunk), width), dtype=torch.long)
        attention = torch.zeros_like(inputs)
        positions, targets = [], []
        for row, (w, t) in enumerate(chunk):
            window = torch.cat([prefix, stream[w.begin:w.end], suffix])
            position = len(prefix) + t - w.begin
            targets.append(int(window[position]))
            window[position] = mask_id
            inputs[row, :len(window)], attention[row, :len(window)] = window, 1
            positions.append(position)
        logits = model(input_ids=inputs.to(device), attention_mask=attention.to(device)).logits
        picked = logits[torch.arange(len(chunk)), torch.tensor(positions)].float()
        losses = F.cross_entropy(picked, torch.tensor(targets, device=picked.device), reduction="none")
        for (_, t), loss in zip(chunk, losses.double().cpu(), strict=True):
            nll[t - 1] = loss
    if was_training:
        model.train()
    return nll
