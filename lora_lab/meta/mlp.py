"""The paper's `mlp` coefficient version: a learned scalar transform of z-scored distances.

f(z) = z + MLP(z) (1 -> hidden -> 1, last layer zero-initialised) is applied to every z-scored distance
before the softmin, so training starts exactly at the `normalized` rule and can only move away from it
where that lowers the objective. It is fit on training tasks only, to minimise
    sum_i ||C_i Theta - Theta_i||^2 / sum_i ||Theta_i||^2
through the training block of the Gram matrix (see `gram.py`); held-out tasks are never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lora_lab.config.errors import ConfigError
from lora_lab.meta.coefficients import zscore_rows
from lora_lab.meta.threads import torch_threads

# float32 halves the cost of the per-step (t x t x hidden) MLP and the two t^3 products; the objective is a
# ratio of traces, computed on a Gram matrix rescaled to unit mean diagonal, so float32 is ample.
TRAIN_DTYPE = torch.float32


class ResidualScalarMLP(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = nn.Linear(1, hidden, dtype=TRAIN_DTYPE)
        self.out = nn.Linear(hidden, 1, dtype=TRAIN_DTYPE)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.out(torch.relu(self.hidden(z.unsqueeze(-1)))).squeeze(-1)


class LearnedTransform:
    """Callable numpy -> numpy wrapper, what `compute_coefficients(..., transform=...)` expects."""

    def __init__(self, module: ResidualScalarMLP):
        self.module = module.eval()

    def __call__(self, z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(z), dtype=TRAIN_DTYPE)).numpy().astype(np.float64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> LearnedTransform:
        module = ResidualScalarMLP(hidden=state["hidden.weight"].shape[0])
        module.load_state_dict(state)
        return cls(module)


@dataclass
class MLPFit:
    transform: LearnedTransform
    train_indices: list[int]
    loss_before: float  # relative Gram objective of the `normalized` rule on the training tasks
    loss_after: float  # ... of the best transform found (never above loss_before)
    history: list[float] = field(default_factory=list)


def gram_objective(coefficients: torch.Tensor, gram: torch.Tensor) -> torch.Tensor:
    """(tr(C G C^T) - 2 tr(C G) + tr(G)) / tr(G) for square C over the same tasks as G."""
    mixed = coefficients @ gram
    return ((mixed * coefficients).sum() - 2.0 * torch.diagonal(mixed).sum()) / torch.trace(gram) + 1.0


def train_mlp_transform(
    distances: np.ndarray,
    gram: np.ndarray,
    train_indices: Sequence[int],
    exclude: np.ndarray | None = None,
    temperature: float = 1.0,
    hidden: int = 16,
    steps: int = 300,
    learning_rate: float = 0.01,
    seed: int = 0,
) -> MLPFit:
    """Fit f on the bank-vs-bank block of training tasks.

    `distances`, `gram` and `exclude` are (n_bank, n_bank); only their train x train blocks are used, with
    each training task predicted from the other training tasks (leave-one-out, plus `exclude`).
    """
    train = np.asarray(sorted(set(int(i) for i in train_indices)), dtype=np.int64)
    if train.size < 3:
        raise ConfigError("meta.mlp.train_tasks", int(train.size), "need at least 3 training tasks")
    if not temperature > 0:
        raise ConfigError("meta.coefficients.temperature", temperature, "must be > 0")
    block = np.ix_(train, train)
    allowed = ~np.eye(train.size, dtype=bool)
    if exclude is not None:
        allowed &= ~np.asarray(exclude, dtype=bool)[block]
    if not allowed.any(axis=1).all():
        raise ValueError("a training task excludes every other training task")
    z = torch.as_tensor(
        zscore_rows(np.asarray(distances, dtype=np.float64)[block], allowed), dtype=TRAIN_DTYPE
    )
    gram_train = np.asarray(gram, dtype=np.float64)[block]
    gram_train = torch.as_tensor(gram_train / np.mean(np.diag(gram_train)), dtype=TRAIN_DTYPE)
    mask = torch.as_tensor(allowed)

    def objective(model: ResidualScalarMLP) -> torch.Tensor:
        logits = (-model(z) / temperature).masked_fill(~mask, float("-inf"))
        return gram_objective(torch.softmax(logits, dim=1), gram_train)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResidualScalarMLP(hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    history: list[float] = []
    best_loss, best_state = float("inf"), None
    # Mid-sized ops (t^2 x hidden): one thread is within 2x of all cores and never collapses when
    # other processes compete for them, which multi-threaded OpenMP does by orders of magnitude.
    with torch_threads(1):
        for step in range(steps + 1):
            optimizer.zero_grad()
            loss = objective(model)
            history.append(float(loss.detach()))
            if history[-1] < best_loss:
                best_loss, best_state = history[-1], {k: v.clone() for k, v in model.state_dict().items()}
            if step < steps:
                loss.backward()
                optimizer.step()
    model.load_state_dict(best_state)
    return MLPFit(LearnedTransform(model), train.tolist(), history[0], best_loss, history)
