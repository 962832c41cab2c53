"""Summed log-probabilities of continuations given contexts, in batches (label scoring for `eval_mode=choice`).

Rows are left-padded so every continuation ends at the last column: the model then only projects the last
`max continuation + 1` positions onto the vocabulary (`logits_to_keep`), not the whole prompt. Position ids
restart at each row's first real token, so padding does not change a row's score.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm


def left_padded(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


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
    """log p(continuation | context) summed over the continuation's tokens, for each (context, continuation)."""
    for context, continuation in pairs:
        if not context or not continuation:
            raise ValueError("each pair needs a non-empty context and continuation")
    order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
    out = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    for start in tqdm(range(0, len(order), batch_size), desc=desc, dynamic_ncols=True, leave=False, disable=None):
        index = order[start:start + batch_size]
        ids, mask = left_padded([[*pairs[i][0], *pairs[i][1]] for i in index], pad_id)
        n_cont = torch.tensor([len(pairs[i][1]) for i in index])
        keep = int(n_cont.max()) + 1
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device),
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device), logits_to_keep=keep,
        ).logits[:, -keep:].float()
        targets = ids[:, ids.shape[1] - keep + 1:].to(device)
        token_lp = -F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")  # (B, keep-1)
        scored = torch.arange(keep - 1, device=device)[None, :] >= (keep - 1 - n_cont.to(device))[:, None]
        sums = torch.where(scored, token_lp, torch.zeros_like(token_lp)).sum(-1)
        for i, value in zip(index, sums.tolist(), strict=True):
            out[i] = value
    if was_training:
        model.train()
    return out
