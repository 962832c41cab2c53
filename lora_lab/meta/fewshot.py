"""Coefficients from a handful of labelled target examples, with forward passes only (LoraHub-style).

The distance-based settings never look at the target's answers. When a user has a few labelled examples, the
weights can be chosen by the answer loss of those examples instead. `FEWSHOT_RULES` (`method.version`):

- `fewshot`: the project's search - weights on the simplex of the `candidates` members the distance prior ranks
  highest (softmax of free logits, so every proposal is a valid mixture), started at the prior; optional L1 pull
  towards the prior (`l1`, default 0).
- `lorahub`: LoraHub's published search (Huang et al. 2023) - free, signed weights in [-1.5, 1.5], started at 0,
  objective loss + 0.05 * mean_j |w_j|. LoraHub samples its 20 candidates at random and uses nevergrad's NGOpt
  for 40 steps; here the candidates are the prior's top members and the optimiser is CMA.
- `lorahub_prior`: the same free weights with the distance prior as start and as the L1 anchor
  (loss + l1 * mean_j |w_j - prior_j|).
- `best_single`: LoraHub's control - every allowed member alone, the one with the least answer loss.

A derivative-free optimiser (nevergrad CMA) proposes a batch of weight vectors at a time; a `BankMixture`
scores the whole batch in one forward pass, in the form the adapter will be written in (`delta` or LoraHub's
`factors`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.meta.mixture import BankMixture
from lora_lab.registry import Registry
from lora_lab.training.batching import collate
from lora_lab.training.tokenize import IGNORE_INDEX, Features

LORAHUB_BOUND = 1.5  # LoraHub's box for each weight
LORAHUB_L1 = 0.05  # LoraHub's penalty on the mean absolute weight


@dataclass
class SearchResult:
    coefficients: np.ndarray  # over the whole bank
    start_loss: float  # answer loss where the search started (best_single: the prior's top member alone)
    best_loss: float  # answer loss of the returned coefficients
    evaluations: int
    mixture: bool = True  # a convex mixture (renormalise after top-k) or free weights to use as they are
    penalty: float = 0.0  # the L1 term at the returned coefficients


@dataclass(frozen=True)
class FewshotOptions:
    """How much search, and in which form the candidates are scored (the form the adapter is written in)."""

    candidates: int = 8  # members the search may weight: the prior's top ones
    budget: int = 96  # answer-loss evaluations (weight vectors), the start included
    batch: int = 16  # weight vectors per forward pass
    seed: int = 0
    l1: float | None = None  # None: the rule's own penalty
    form: str = "delta"  # BankMixture form: `delta`, or `factors` (LoraHub's composition)


FewshotRule = Callable[[torch.nn.Module, BankMixture, Sequence[Features], np.ndarray, np.ndarray, int,
                        FewshotOptions], SearchResult]
FEWSHOT_RULES: Registry[FewshotRule] = Registry("few-shot coefficient version", "method.version")


@torch.no_grad()
def answer_losses(model: torch.nn.Module, mixture: BankMixture, features: Sequence[Features],
                  rows: np.ndarray, pad_id: int, form: str = "delta") -> np.ndarray:
    """Mean answer-token NLL of every example under every coefficient row: shape (len(rows),)."""
    device = next(model.parameters()).device
    batch = collate(features, pad_id)  # right-padded, prompt tokens labelled IGNORE_INDEX
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    n_rows, n_examples = len(rows), len(features)
    tile = lambda t: t.repeat(n_rows, 1).to(device)  # noqa: E731 — row r*E+e: coefficient row r, example e
    mixture.set_rows(np.repeat(np.asarray(rows, dtype=np.float32), n_examples, axis=0), form)
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


def candidate_pool(prior: np.ndarray, allowed: np.ndarray, candidates: int) -> np.ndarray:
    """The `candidates` allowed members with the largest prior weights (only positive ones, when 2+ are)."""
    prior = np.where(allowed, prior, 0.0)
    pool = np.argsort(-prior, kind="stable")[:min(candidates, int(allowed.sum()))]
    return pool[prior[pool] > 0] if (prior[pool] > 0).sum() >= 2 else pool


def search_coefficients(model: torch.nn.Module, mixture: BankMixture, features: Sequence[Features],
                        start: np.ndarray, allowed: np.ndarray, pad_id: int, candidates: int = 8,
                        budget: int = 96, batch: int = 16, seed: int = 0, weights: str = "simplex",
                        start_at: str = "prior", l1: float = 0.0, form: str = "delta") -> SearchResult:
    """Search the weights of the `candidates` members with the largest `start` (prior) weights among `allowed`.

    `weights="simplex"`: a mixture (softmax of free logits); `"free"`: signed weights in [-1.5, 1.5] (LoraHub).
    `start_at="prior"` starts at the prior renormalised over the pool, `"zero"` at 0 (free weights only). The
    objective is the mean answer loss + `l1` * mean |w - w_start| over the pool: an L1 pull towards the start
    (towards 0 from a zero start, LoraHub's penalty)."""
    import nevergrad as ng

    if not features:
        raise ConfigError("fewshot examples", 0, "need at least one labelled target example")
    if weights not in ("simplex", "free") or start_at not in ("prior", "zero") or l1 < 0:
        raise ValueError(f"unknown search space: weights={weights!r}, start_at={start_at!r}, l1={l1}")
    if weights == "simplex" and start_at == "zero":
        raise ValueError("a mixture cannot start at zero: use weights='free' for a zero start")
    start = np.where(allowed, np.asarray(start, dtype=np.float64), 0.0)
    pool = candidate_pool(start, allowed, candidates)
    prior = start[pool] / max(start[pool].sum(), 1e-12)
    anchor = prior if start_at == "prior" else np.zeros(len(pool))

    def pool_weights(value: np.ndarray) -> np.ndarray:
        if weights == "free":
            return np.asarray(value, dtype=np.float64)
        exp = np.exp(value - value.max())
        return exp / exp.sum()

    def full_row(value: np.ndarray) -> np.ndarray:
        row = np.zeros(len(start))
        row[pool] = pool_weights(value)
        return row

    def penalty(value: np.ndarray) -> float:
        return float(l1 * np.abs(pool_weights(value) - anchor).mean())

    if weights == "free":
        initial = anchor.copy()
        parametrization = ng.p.Array(init=initial).set_bounds(-LORAHUB_BOUND, LORAHUB_BOUND)
    else:
        initial = np.log(np.clip(prior, 1e-4, None))
        parametrization = ng.p.Array(init=initial).set_bounds(initial.min() - 6, initial.max() + 6)
    parametrization.random_state = np.random.RandomState(seed)
    optimizer = ng.optimizers.CMA(parametrization=parametrization, budget=budget, num_workers=batch)
    start_loss = float(answer_losses(model, mixture, features, full_row(initial)[None], pad_id, form)[0])
    best = (start_loss + penalty(initial), start_loss, initial)
    used = 1
    while used < budget:
        asked = [optimizer.ask() for _ in range(min(batch, budget - used))]
        values = [np.asarray(c.value, dtype=np.float64) for c in asked]
        losses = answer_losses(model, mixture, features, np.stack([full_row(v) for v in values]), pad_id, form)
        for candidate, value, loss in zip(asked, values, losses, strict=True):
            objective = float(loss) + penalty(value)
            optimizer.tell(candidate, objective)
            if objective < best[0]:
                best = (objective, float(loss), value)
        used += len(asked)
    objective, best_loss, value = best
    return SearchResult(full_row(value), start_loss, best_loss, used, weights == "simplex", objective - best_loss)


def searched(weights: str, start_at: str, l1: float) -> FewshotRule:
    """A FEWSHOT_RULES entry: `search_coefficients` over one search space, `l1` unless the options set it."""

    def rule(model, mixture, features, prior, allowed, pad_id, options: FewshotOptions) -> SearchResult:
        return search_coefficients(model, mixture, features, prior, allowed, pad_id, options.candidates,
                                   options.budget, options.batch, options.seed, weights, start_at,
                                   l1 if options.l1 is None else options.l1, options.form)

    return rule


FEWSHOT_RULES.add("fewshot", searched("simplex", "prior", 0.0))
FEWSHOT_RULES.add("lorahub", searched("free", "zero", LORAHUB_L1))
FEWSHOT_RULES.add("lorahub_prior", searched("free", "prior", LORAHUB_L1))


@FEWSHOT_RULES.register("best_single")
def best_single(model: torch.nn.Module, mixture: BankMixture, features: Sequence[Features], prior: np.ndarray,
                allowed: np.ndarray, pad_id: int, options: FewshotOptions) -> SearchResult:
    """LoraHub's control: every allowed member alone on the labelled examples; the least answer loss wins
    (ties: the lower bank index). The prior only names the starting point reported (its top member)."""
    if not features:
        raise ConfigError("fewshot examples", 0, "need at least one labelled target example")
    members = np.flatnonzero(allowed)
    rows = np.eye(len(allowed))[members]
    losses = np.concatenate([answer_losses(model, mixture, features, rows[i:i + options.batch], pad_id)
                             for i in range(0, len(rows), options.batch)])
    best = int(np.argmin(losses))
    top = int(np.argmax(np.where(allowed, prior, -np.inf)))
    return SearchResult(rows[best], float(losses[members == top][0]), float(losses[best]), len(members))


def fewshot_coefficients(version: str, model: torch.nn.Module, mixture: BankMixture, features: Sequence[Features],
                         prior: np.ndarray, allowed: np.ndarray, pad_id: int,
                         options: FewshotOptions = FewshotOptions()) -> SearchResult:
    """The coefficients of a labelled-example version (`FEWSHOT_RULES`), from a label-free prior row."""
    return FEWSHOT_RULES.get(version)(model, mixture, features, np.asarray(prior, dtype=np.float64),
                                      np.asarray(allowed, dtype=bool), pad_id, options)
