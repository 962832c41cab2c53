"""Coefficients from a handful of labelled target examples, with forward passes only (LoraHub-style).

The distance-based settings never look at the target's answers. When a user has a few labelled examples,
the mixture weights can be searched directly: minimise the answer loss of those examples over the simplex of
the `candidates` nearest members (softmax of free logits, so any point the optimiser proposes is a valid
mixture), started from the distance-based weights. A derivative-free optimiser (nevergrad) proposes a batch
of candidates at a time; a `BankMixture` scores the whole batch in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.meta.mixture import BankMixture
from lora_lab.training.batching import collate
from lora_lab.training.tokenize import IGNORE_INDEX, Features


@dataclass
class SearchResult:
    coefficients: np.ndarray  # over the whole bank
    start_loss: float
    best_loss: float
    evaluations: int


@torch.no_grad()
def answer_losses(model: torch.nn.Module, mixture: BankMixture, features: Sequence[Features],
                  rows: np.ndarray, pad_id: int) -> np.ndarray:
    """Mean answer-token NLL of every example under every coefficient row: shape (len(rows),)."""
    device = next(model.parameters()).device
    batch = collate(features, pad_id)  # right-padded, prompt tokens labelled IGNORE_INDEX
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    n_rows, n_examples = len(rows), len(features)
    tile = lambda t: t.repeat(n_rows, 1).to(device)  # noqa: E731 — row r*E+e: coefficient row r, example e
    mixture.set_rows(np.repeat(np.asarray(rows, dtype=np.float32), n_examples, axis=0))
    try:
        logits = model(input_ids=tile(ids), attention_mask=tile(mask)).logits[:, :-1].float()
    finally:
        mixture.set_rows(None)
    target = tile(labels)[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE_INDEX,
                                            reduction="none")
    counts = (target != IGNORE_INDEX).sum(1).clamp(min=1)
    per_example = (nll.sum(1) / counts).view(n_rows, n_examples)
    return per_example.mean(1).cpu().numpy()


def search_coefficients(model: torch.nn.Module, mixture: BankMixture, features: Sequence[Features],
                        start: np.ndarray, allowed: np.ndarray, pad_id: int, candidates: int = 8,
                        budget: int = 96, batch: int = 16, seed: int = 0) -> SearchResult:
    """Search the weights of the `candidates` members with the largest `start` weights among `allowed`."""
    import nevergrad as ng

    if not features:
        raise ConfigError("fewshot examples", 0, "need at least one labelled target example")
    start = np.where(allowed, np.asarray(start, dtype=np.float64), 0.0)
    pool = np.argsort(-start, kind="stable")[:min(candidates, int(allowed.sum()))]
    pool = pool[start[pool] > 0] if (start[pool] > 0).sum() >= 2 else pool

    def full_row(logits: np.ndarray) -> np.ndarray:
        weights = np.exp(logits - logits.max())
        row = np.zeros(len(start))
        row[pool] = weights / weights.sum()
        return row

    initial = np.log(np.clip(start[pool] / max(start[pool].sum(), 1e-12), 1e-4, None))
    parametrization = ng.p.Array(init=initial).set_bounds(initial.min() - 6, initial.max() + 6)
    parametrization.random_state = np.random.RandomState(seed)
    optimizer = ng.optimizers.CMA(parametrization=parametrization, budget=budget, num_workers=batch)
    start_loss = float(answer_losses(model, mixture, features, full_row(initial)[None], pad_id)[0])
    best_loss, best_row, used = start_loss, full_row(initial), 1
    while used < budget:
        asked = [optimizer.ask() for _ in range(min(batch, budget - used))]
        rows = np.stack([full_row(np.asarray(c.value)) for c in asked])
        losses = answer_losses(model, mixture, features, rows, pad_id)
        for candidate, loss in zip(asked, losses, strict=True):
            optimizer.tell(candidate, float(loss))
        used += len(asked)
        if losses.min() < best_loss:
            best_loss, best_row = float(losses.min()), rows[int(losses.argmin())]
    return SearchResult(best_row, start_loss, best_loss, used)
