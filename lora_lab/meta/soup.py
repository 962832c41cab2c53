"""AdapterSoup's one free setting, the number k of nearest members averaged, chosen on the bank alone.

AdapterSoup (Chronopoulou et al. 2023) averages the adapters of the k domains most similar to the new one; the
paper compares a few k on held-out domains. Here k must be chosen without the target and without generating, so
the bank plays the targets: each allowed member in turn is a pseudo-target, its k nearest other allowed members
(by the same distance, the same exclusion rule) are averaged, and the soup is compared with the pseudo-target's
own adapter in parameter space through the bank Gram matrix G (`gram.py`):

    err_i(k) = ||mean_{j in N_k(i)} Theta_j - Theta_i||^2 / ||Theta_i||^2
             = (sum_{a,b in N_k} G_ab / k^2 - 2 sum_{a in N_k} G_ai / k + G_ii) / G_ii.

The k with the least mean error over pseudo-targets wins (ties: the smaller k). This is a proxy: closeness of
the flattened factors (every lora_A and lora_B, as the `mlp` version's objective) to a member's own adapter, not
the score on its task - whether the two agree on a bank is something a study measures, not something assumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SoupChoice:
    k: int
    candidates: list[int]  # the k that were compared
    errors: list[float]  # mean relative reconstruction error of each candidate k over the pseudo-targets
    pseudo_targets: int


def soup_errors(distances: np.ndarray, gram: np.ndarray, target: int, neighbours: np.ndarray,
                candidates: Sequence[int]) -> np.ndarray:
    """err_target(k) for every k of `candidates` (k beyond the neighbours available averages them all)."""
    order = neighbours[np.argsort(distances[target, neighbours], kind="stable")]
    block = gram[np.ix_(order, order)]
    # Sum over the leading k x k block of G and the leading k entries of G[:, target], for every k at once.
    inner = np.cumsum(np.cumsum(block, axis=0), axis=1).diagonal()
    cross = np.cumsum(gram[order, target])
    ks = np.minimum(np.asarray(candidates), len(order))
    errors = inner[ks - 1] / ks**2 - 2 * cross[ks - 1] / ks + gram[target, target]
    return np.maximum(errors, 0.0) / gram[target, target]


def choose_soup_k(distances: np.ndarray, gram: np.ndarray, pool: Sequence[int], exclude: np.ndarray,
                  candidates: Sequence[int] | None = None) -> SoupChoice:
    """The k (among `candidates`, default 1 .. |pool| - 1) whose soups best rebuild the pool's own adapters.

    `distances` (n, n) and `gram` (n, n) are bank x bank; `pool` the members a target may use (its own row and
    column never enter: pass the bank without the target); `exclude` (n, n) the same exclusion rule the target
    gets (the member itself, or its whole source family), applied to every pseudo-target. Deterministic: no
    sampling, ties broken towards the smaller k and, among neighbours, the lower bank index. A pool with no
    member that has an allowed neighbour (one member, or one family under leave-source-out) teaches nothing:
    then the smallest candidate is returned, with `pseudo_targets` 0.
    """
    pool = np.asarray(sorted(set(int(i) for i in pool)), dtype=np.int64)
    ks = list(range(1, max(len(pool), 2))) if candidates is None else sorted({int(k) for k in candidates})
    if not ks or ks[0] < 1:
        raise ValueError(f"soup k candidates must be >= 1, got {ks}")
    gram = np.asarray(gram, dtype=np.float64)
    totals, counted = np.zeros(len(ks)), 0
    for target in pool:
        neighbours = pool[~np.asarray(exclude, dtype=bool)[target, pool]]
        neighbours = neighbours[neighbours != target]
        if len(neighbours) == 0 or gram[target, target] <= 0:
            continue  # nothing to rebuild it from, or an all-zero adapter: no information about k
        totals += soup_errors(distances, gram, int(target), neighbours, ks)
        counted += 1
    if counted == 0:
        return SoupChoice(ks[0], ks, [float("nan")] * len(ks), 0)
    means = totals / counted
    best = int(np.argmin(means))  # first minimum: the smaller k on ties
    return SoupChoice(ks[best], ks, means.tolist(), counted)
