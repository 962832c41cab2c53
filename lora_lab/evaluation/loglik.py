"""Summed log-probabilities of continuations given contexts, in batches (label scoring for `eval_mode=choice`).

The label words of one example share its prompt, so each distinct prompt is run once: its last position gives
every continuation's first token, and its KV cache, copied once per continuation, feeds a second short forward
over the continuations' remaining tokens. With K labels that is ~K times less prompt compute than scoring
prompt + label K times. Prompts are left-padded with position ids restarting at each row's first real token,
so padding does not change a score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lora_lab.evaluation.progress import progress


def left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def right_padded(rows: Sequence[Sequence[int]], pad_id: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def _score_batch(model, contexts: list[tuple[int, ...]], continuations: list[list[Sequence[int]]], pad_id: int,
                 device: torch.device) -> list[list[float]]:
    """Scores of each context's continuations: one forward over the prompts, one over the continuation tails."""
    ids, mask = left_padded(contexts, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    first = F.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): each continuation's first token
    rows = torch.tensor([b for b, conts in enumerate(continuations) for _ in conts], device=device)
    flat = [c for conts in continuations for c in conts]
    scores = first[rows, torch.tensor([c[0] for c in flat], device=device)]
    tail_width = max(len(c) for c in flat) - 1
    if tail_width > 0:  # tokens 2.. of each continuation, predicted from the cached prompt + the tokens before
        cache = out.past_key_values
        cache.reorder_cache(rows)  # one copy of its prompt's cache per continuation
        tail_in, tail_mask = right_padded([c[:-1] for c in flat], pad_id, tail_width)
        targets, target_mask = right_padded([c[1:] for c in flat], pad_id, tail_width)
        tail_in, tail_mask, targets, target_mask = (t.to(device) for t in (tail_in, tail_mask, targets, target_mask))
        logits = model(
            input_ids=tail_in, attention_mask=torch.cat([mask[rows], tail_mask], dim=1),
            position_ids=positions[rows, -1:] + 1 + torch.arange(tail_width, device=device), past_key_values=cache,
        ).logits.float()
        token_lp = -F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        scores = scores + torch.where(target_mask.bool(), token_lp, torch.zeros_like(token_lp)).sum(-1)
    values = iter(scores.tolist())
    return [[next(values) for _ in conts] for conts in continuations]


@torch.no_grad()
def continuation_logprobs(
    model: torch.nn.Module,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    pad_id: int,
    batch_size: int,
    device: torch.device,
    desc: str = "score",
) -> list[float]:
    """log p(continuation | context) summed over the continuation's tokens, for each (context, continuation).
    `batch_size` counts distinct contexts per forward."""
    grouped: dict[tuple[int, ...], list[int]] = {}
    for i, (context, continuation) in enumerate(pairs):
        if not context or not continuation:
            raise ValueError("each pair needs a non-empty context and continuation")
        grouped.setdefault(tuple(context), []).append(i)
    contexts = sorted(grouped, key=len, reverse=True)  # similar lengths share a batch: little padding
    out = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    for start in progress(range(0, len(contexts), batch_size), desc=desc):
        batch = contexts[start:start + batch_size]
        scores = _score_batch(model, batch, [[pairs[i][1] for i in grouped[c]] for c in batch], pad_id, device)
        for context, values in zip(batch, scores, strict=True):
            for i, value in zip(grouped[context], values, strict=True):
                out[i] = value
    if was_training:
        model.train()
    return out
