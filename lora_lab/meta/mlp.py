"""The paper's `mlp` coefficient version: a learned scalar transform of z-scored distances.

f is a one-hidden-layer ReLU network (1 -> hidden -> 1) with a linear skip, constrained to be increasing:

    f(z) = e^a z + sum_h w_h relu(sign(w_h) |u_h| z + b_h),

each unit's input slope takes the sign of its output weight, so f' = e^a + sum |w_h| |u_h| [unit on] > 0.
A closer member therefore never gets less weight than a farther one (a 1-to-1 reshaping of the softmin's
sharpness), which also keeps small banks from overfitting into odd rankings. With a = 0 and w = 0 at
initialisation f is the identity: training starts exactly at the `normalized` rule and keeps the best
iterate, so it never ends worse on the training tasks. It is fit on training tasks only, to minimise
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


class MonotoneScalarMLP(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros((), dtype=TRAIN_DTYPE))
        self.slope = nn.Parameter(torch.randn(hidden, dtype=TRAIN_DTYPE))
        self.shift = nn.Parameter(torch.randn(hidden, dtype=TRAIN_DTYPE))
        self.weight = nn.Parameter(torch.zeros(hidden, dtype=TRAIN_DTYPE))  # 0: f starts as the identity

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        slopes = torch.sign(self.weight) * self.slope.abs()  # a unit only adds increasing pieces
        return self.log_scale.exp() * z + torch.relu(z.unsqueeze(-1) * slopes + self.shift) @ self.weight


class LearnedTransform:
    """Callable numpy -> numpy wrapper, what `compute_coefficients(..., transform=...)` expects."""

    def __init__(self, module: MonotoneScalarMLP):
        self.module = module.eval()

    def __call__(self, z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.module(torch.as_tensor(np.asarray(z), dtype=TRAIN_DTYPE)).numpy().astype(np.float64)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> LearnedTransform:
        module = MonotoneScalarMLP(hidden=state["slope"].shape[0])
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
    steps: int = 100,
    learning_rate: float = 0.05,
    seed: int = 0,
) -> MLPFit:
    """Fit f on the bank-vs-bank block of training tasks.

    `distances`, `gram` and `exclude` are (n_bank, n_bank); only their train x train blocks are used, with
    each training task predicted from the other training tasks (leave-one-out, plus `exclude`).
    """
    train = np.asarray(sorted(set(int(i) for i in train_indices)), dtype=np.int64)
    if train.size < 3:
        raise ConfigError("method.version", "mlp", f"needs at least 3 training tasks (bank members other than the "
                          f"target), got {train.size}")
    if not temperature > 0:
        raise ConfigError("method.temperature", temperature, "must be > 0")
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

    def objective(model: MonotoneScalarMLP) -> torch.Tensor:
        logits = (-model(z) / temperature).masked_fill(~mask, float("-inf"))
        return gram_objective(torch.softmax(logits, dim=1), gram_train)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MonotoneScalarMLP(hidden)
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
