"""Arrow routing (Ostapenko et al. 2024): data-free, per-token mixing of a library of LoRAs.

Each member's prototype for a module is the top right singular vector of its update dW_j = B_j A_j - the input
direction that member amplifies most. A token x is scored against every allowed member by |<x, v_j>| (sign-free:
a singular vector's sign is arbitrary), the top-k scores go through a softmax, and the token's LoRA output is the
gated sum of those members' outputs. No target data and no training: but the mixture differs per token and per
layer, so it is not one static adapter; `BankMixture` scores it (its `arrow` row form).

PEFT ships the same router (`ArrowConfig`, `create_arrow_model`, default top_k 3, temperature 1), built for one
fixed set of adapters per model. A study needs a different allowed set per batch row (leave-one-out,
leave-source-out, nested bank sizes, all in one batched generation), so the routing is done here over the
bank's stacked factors; the tests check it against PEFT's model on a bank where every member is allowed.
"""

from __future__ import annotations

import torch

DEFAULT_TOP_K = 3  # PEFT's ArrowConfig default
DEFAULT_TEMPERATURE = 1.0


def arrow_prototypes(a: torch.Tensor, b: torch.Tensor, members: int) -> torch.Tensor:
    """(members, d_in): the top right singular vector of each B_j A_j, from the stacked factors A (N r, d_in)
    and B (d_out, N r). Exact, without forming dW: with B_j = Q_j R_j (thin QR), dW_j = Q_j (R_j A_j) and Q_j
    has orthonormal columns, so dW_j and the small R_j A_j (r x d_in) share their right singular vectors."""
    rank = a.shape[0] // members
    a_j = a.to(torch.float64).view(members, rank, -1)  # (N, r, d_in)
    b_j = b.to(torch.float64).view(b.shape[0], members, rank).permute(1, 0, 2)  # (N, d_out, r)
    r_j = torch.linalg.qr(b_j, mode="r").R  # (N, r, r)
    vh = torch.linalg.svd(r_j @ a_j, full_matrices=False).Vh  # (N, r, d_in), rows by singular value
    return vh[:, 0, :].to(a.dtype)


def arrow_gates(x: torch.Tensor, prototypes: torch.Tensor, allowed: torch.Tensor, top_k: int = DEFAULT_TOP_K,
                temperature: float = DEFAULT_TEMPERATURE) -> torch.Tensor:
    """Per-token member weights (rows, ..., N): softmax over the `top_k` largest |<x, v_j>| among the row's
    allowed members (`allowed`: (rows, N) bool), 0 elsewhere; each token's weights sum to 1."""
    scores = (x @ prototypes.T).abs()
    allowed = allowed.view(allowed.shape[0], *([1] * (x.dim() - 2)), allowed.shape[1])
    scores = scores.masked_fill(~allowed, float("-inf"))
    top, index = torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1)
    kept = torch.full_like(scores, float("-inf")).scatter(-1, index, top)
    return torch.softmax(kept / temperature, dim=-1)
