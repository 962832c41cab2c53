"""Exact many-vs-many distances between dataset representations.

Every metric takes the (n, V) target rows and (m, V) member rows and returns the full (n, m) float64 matrix
D[target, member]. Token metrics treat rows as token-ID histograms (counts or frequencies; they normalise)
and are computed exactly from the whole histogram - no token sampling, so results are deterministic.
Each metric is written as matrix products or a sparse, chunked loop so a 502 x 502 bank over a 32k vocabulary
takes seconds and the working memory stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.meta.histograms import normalize_rows
from lora_lab.meta.threads import torch_threads
from lora_lab.registry import Registry

DistanceFn = Callable[..., np.ndarray]

DISTANCES: Registry[DistanceFn] = Registry("distance metric", "metric")

# Which metrics make sense for which representation: token metrics need distributions over token ids.
METRICS_BY_REPRESENTATION: dict[str, tuple[str, ...]] = {
    "tokens": ("wd", "kl", "js", "mmd", "l2", "cosine"),
    "embedding": ("l2", "cosine"),
}

MMD_BANDWIDTHS: tuple[float, ...] = (0.2, 0.5, 0.9, 1.3)  # the paper's multiscale inverse-quadratic kernel
DEFAULT_KL_EPSILON = 1e-10
_BLOCK_ELEMENTS = 1 << 24  # largest temporary (in float64 elements, 128 MiB) any metric allocates
_WD_ROWS_PER_BLOCK = 64  # cdist(p=1) has no (rows x members x V) temporary; blocks only enable symmetry
_JS_TOKENS_PER_SLICE = 256  # tokens x members slice of the JS mixture term; a few hundred KiB stays in cache


def _as_tensor(rows: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float64))


def _is_self_comparison(targets: np.ndarray, members: np.ndarray) -> bool:
    """Bank-vs-bank matrices of symmetric metrics only need their upper triangle."""
    return targets is members or (targets.shape == members.shape and np.array_equal(targets, members))


def _row_blocks(n_rows: int, per_row_elements: int) -> Iterator[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(1, per_row_elements))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _symmetric_pairwise(
    targets: torch.Tensor,
    members: torch.Tensor,
    symmetric: bool,
    block_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    rows_per_block: int,
) -> np.ndarray:
    """Run `block_fn(target_block, member_rows)` over row blocks; mirror the upper triangle when symmetric."""
    n, m = targets.shape[0], members.shape[0]
    out = torch.empty((n, m), dtype=torch.float64)
    for start in range(0, n, rows_per_block):
        rows = slice(start, min(n, start + rows_per_block))
        first_member = rows.start if symmetric else 0
        block = block_fn(targets[rows], members[first_member:])
        out[rows, first_member:] = block
        if symmetric:
            out[first_member:, rows] = block.T
    return out.numpy()


@DISTANCES.register("wd")
def wasserstein_distance(targets: np.ndarray, members: np.ndarray) -> np.ndarray:
    """1-Wasserstein distance between token-ID distributions with unit spacing between ids.

    On a line, W1 is the L1 distance between the two CDFs; over ids 0..V-1 that is sum_k |F_p(k) - F_q(k)|.
    """
    symmetric = _is_self_comparison(targets, members)
    target_cdf = torch.cumsum(_as_tensor(normalize_rows(targets)), dim=1)
    member_cdf = target_cdf if symmetric else torch.cumsum(_as_tensor(normalize_rows(members)), dim=1)
    return _symmetric_pairwise(
        target_cdf,
        member_cdf,
        symmetric,
        lambda block, rows: torch.cdist(block, rows, p=1.0),
        rows_per_block=_WD_ROWS_PER_BLOCK,
    )


def smooth_distribution(histograms: np.ndarray, epsilon: float) -> np.ndarray:
    """Normalise, add epsilon to every token and renormalise, so log q is finite where q had no mass."""
    if epsilon < 0:
        raise ConfigError("metric.kl_epsilon", epsilon, "must be >= 0")
    probabilities = normalize_rows(histograms)
    return (probabilities + epsilon) / (1.0 + epsilon * probabilities.shape[1])


@DISTANCES.register("kl")
def kl_divergence(
    targets: np.ndarray, members: np.ndarray, epsilon: float = DEFAULT_KL_EPSILON
) -> np.ndarray:
    """KL(p_target || p_member) of add-epsilon smoothed, normalised histograms (natural log).

    sum_k p log p - p log q = rowwise(p log p) - P @ log(Q)^T: one matrix product for the whole matrix.
    """
    p = _as_tensor(smooth_distribution(targets, epsilon))
    q = _as_tensor(smooth_distribution(members, epsilon))
    negative_entropy = torch.special.xlogy(p, p).sum(dim=1, keepdim=True)
    divergence = negative_entropy - p @ torch.log(q).T
    return divergence.clamp_min_(0.0).numpy()  # rounding can give -1e-16 for identical rows


@DISTANCES.register("js")
def jensen_shannon_divergence(targets: np.ndarray, members: np.ndarray) -> np.ndarray:
    """JS(p, q) = KL(p||m)/2 + KL(q||m)/2 with m = (p+q)/2, natural log, so 0 <= JS <= ln 2.

    Per token, with g(p, q) = p ln p + q ln q - (p+q) ln(p+q):
        p ln(2p/(p+q)) + q ln(2q/(p+q)) = (p+q) ln 2 + g(p, q),
    and g = 0 whenever p = 0 or q = 0. Summing, since both rows sum to 1,
        JS = ln 2 + 1/2 * [sum_k p ln p + sum_{k in supp p} q ln q - sum_{k in supp p} (p+q) ln(p+q)].
    The middle term for all pairs is one matrix product (support indicators x q ln q); only the last term
    needs a log per (pair, token), and only over the target's support. It is evaluated on member-major
    slices of a few hundred tokens so the temporaries stay in cache.
    """
    symmetric = _is_self_comparison(targets, members)
    p = _as_tensor(normalize_rows(targets))
    q = p if symmetric else _as_tensor(normalize_rows(members))
    q_log_q = torch.special.xlogy(q, q)
    p_log_p = q_log_q.sum(dim=1) if symmetric else torch.special.xlogy(p, p).sum(dim=1)
    q_log_q_on_support = (p > 0).to(torch.float64) @ q_log_q.T  # (n, m)
    del q_log_q
    members_by_token = q.T.contiguous()  # (V, m): gathering a token's row is one contiguous copy
    out = torch.empty((p.shape[0], q.shape[0]), dtype=torch.float64)

    def fill_rows(rows: range) -> None:
        buffer = torch.empty(_JS_TOKENS_PER_SLICE * q.shape[0], dtype=torch.float64)
        logs = torch.empty_like(buffer)
        for i in rows:
            first = i if symmetric else 0
            support = torch.nonzero(p[i] > 0).squeeze(1)
            p_support = p[i, support]
            candidates = members_by_token[:, first:]
            mixture_entropy = torch.zeros(candidates.shape[1], dtype=torch.float64)  # sum (p+q) ln(p+q)
            for start in range(0, support.numel(), _JS_TOKENS_PER_SLICE):
                tokens = support[start : start + _JS_TOKENS_PER_SLICE]
                mixed = buffer[: tokens.numel() * candidates.shape[1]].view(tokens.numel(), -1)
                log_mixed = logs[: mixed.numel()].view_as(mixed)
                torch.index_select(candidates, 0, tokens, out=mixed)
                mixed.add_(p_support[start : start + tokens.numel(), None])
                torch.log(mixed, out=log_mixed)
                mixture_entropy += mixed.mul_(log_mixed).sum(dim=0)
            row = math.log(2.0) + 0.5 * (p_log_p[i] + q_log_q_on_support[i, first:] - mixture_entropy)
            row.clamp_(0.0, math.log(2.0))  # rounding only; 0 <= JS <= ln 2 holds exactly
            out[i, first:] = row
            if symmetric:
                out[first:, i] = row

    _run_rows_in_threads(p.shape[0], fill_rows)
    return out.numpy()


def _run_rows_in_threads(n_rows: int, fill_rows: Callable[[range], None]) -> None:
    """Split rows over one single-threaded torch worker per core.

    The JS loop issues many small ops; intra-op threading on those mostly pays barrier costs (and degrades
    badly when other processes share the cores), while whole rows per thread scale cleanly.
    """
    workers = max(1, torch.get_num_threads())
    with torch_threads(1), ThreadPoolExecutor(max_workers=workers) as pool:
        # interleaved rows: with a symmetric matrix, early rows are the long ones
        list(pool.map(fill_rows, [range(w, n_rows, workers) for w in range(workers)]))


def mmd_kernel_profile(vocab_size: int, bandwidths: Sequence[float] = MMD_BANDWIDTHS) -> np.ndarray:
    """kappa(d) = sum_a a^2 / (a^2 + d^2) for d = -(V-1) .. V-1: the Toeplitz kernel's one defining row."""
    lags = np.arange(-(vocab_size - 1), vocab_size, dtype=np.float64)
    return sum(a * a / (a * a + lags * lags) for a in bandwidths)


@DISTANCES.register("mmd")
def squared_mmd(
    targets: np.ndarray, members: np.ndarray, bandwidths: Sequence[float] = MMD_BANDWIDTHS
) -> np.ndarray:
    """Squared MMD between token-ID distributions under k(x, y) = sum_a a^2 / (a^2 + (x - y)^2).

    MMD^2(p, q) = p'Kp + q'Kq - 2 p'Kq. K[x, y] depends only on x - y (Toeplitz), so K q is a convolution
    of q with the kernel profile, done by FFT in O(V log V) per row; the cross term is then one matrix
    product P (KQ)^T. Exact for the full histograms (the kernel's heavy 1/d^2 tail rules out truncation).
    """
    if not bandwidths or min(bandwidths) <= 0:
        raise ConfigError("mmd_bandwidths", list(bandwidths), "must be non-empty and positive")
    p = _as_tensor(normalize_rows(targets))
    q = _as_tensor(normalize_rows(members))
    vocab = p.shape[1]
    fft_size = 1 << (2 * vocab - 2).bit_length()  # >= 2V - 1: linear, not circular, convolution
    kernel_spectrum = torch.fft.rfft(_as_tensor(mmd_kernel_profile(vocab, bandwidths)), n=fft_size)

    def kernel_times(rows: torch.Tensor) -> torch.Tensor:
        full = torch.fft.irfft(torch.fft.rfft(rows, n=fft_size) * kernel_spectrum, n=fft_size)
        return full[:, vocab - 1 : 2 * vocab - 1]  # (K r)[x] = sum_y kappa(x - y) r[y], x = 0..V-1

    target_self = torch.empty(p.shape[0], dtype=torch.float64)
    member_self = torch.empty(q.shape[0], dtype=torch.float64)
    cross = torch.zeros((p.shape[0], q.shape[0]), dtype=torch.float64)
    for rows in _row_blocks(q.shape[0], 2 * fft_size):
        k_q = kernel_times(q[rows])
        member_self[rows] = (q[rows] * k_q).sum(dim=1)
        cross[:, rows] = p @ k_q.T
    for rows in _row_blocks(p.shape[0], 2 * fft_size):
        target_self[rows] = (p[rows] * kernel_times(p[rows])).sum(dim=1)
    squared = target_self[:, None] + member_self[None, :] - 2.0 * cross
    return squared.clamp_min_(0.0).numpy()  # K is positive definite; negatives are FFT rounding


@DISTANCES.register("l2")
def euclidean_distance(targets: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Euclidean distance between raw rows (mean embeddings; for token histograms prefer the metrics above)."""
    return torch.cdist(_as_tensor(targets), _as_tensor(members), p=2.0).numpy()


@DISTANCES.register("cosine")
def cosine_distance(targets: np.ndarray, members: np.ndarray) -> np.ndarray:
    """1 - cosine similarity of raw rows; scale-free, so usable on mean embeddings and histogram counts alike."""
    p = torch.nn.functional.normalize(_as_tensor(targets), dim=1)
    q = torch.nn.functional.normalize(_as_tensor(members), dim=1)
    return (1.0 - p @ q.T).clamp_(0.0, 2.0).numpy()


def check_metric_for_representation(metric: str, representation: str) -> None:
    """Fail early on combinations like KL over mean embeddings (not distributions)."""
    if representation not in METRICS_BY_REPRESENTATION:
        raise ConfigError(
            "method.representation", representation, "unknown", choices=sorted(METRICS_BY_REPRESENTATION)
        )
    allowed = METRICS_BY_REPRESENTATION[representation]
    if metric not in allowed:
        raise ConfigError(
            "metric", metric, f"not defined for method.representation={representation} (mean sentence embeddings "
            "are vectors, not token distributions)", choices=list(allowed)
        )


def pairwise_distance(metric: str, targets: np.ndarray, members: np.ndarray, **options: Any) -> np.ndarray:
    """D[i, j] = metric(target row i, member row j) as an (n, m) float64 matrix.

    `options` go to the metric (`epsilon` for kl, `bandwidths` for mmd).
    """
    distance_fn = DISTANCES.get(metric)
    targets_arr, members_arr = np.asarray(targets), np.asarray(members)
    if targets is members:
        members_arr = targets_arr  # keep identity so symmetric metrics compute one triangle
    for label, rows in (("targets", targets_arr), ("members", members_arr)):
        if rows.ndim != 2 or rows.shape[0] == 0:
            raise ValueError(f"{label} must be a non-empty (n, dim) matrix, got shape {rows.shape}")
    if targets_arr.shape[1] != members_arr.shape[1]:
        raise ValueError(
            f"targets have {targets_arr.shape[1]} columns but members have {members_arr.shape[1]}; "
            "representations must come from the same tokenizer / encoder"
        )
    return distance_fn(targets_arr, members_arr, **options)
