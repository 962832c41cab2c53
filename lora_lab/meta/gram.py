"""The bank's Gram matrix G = Theta Theta^T over flattened adapters, and the reconstruction objective.

With Theta the (n, P) matrix of flattened LoRA factors (every lora_A and lora_B, concatenated), the squared
error of predicting task i as a mixture C_i Theta is
    ||C_i Theta - Theta_i||^2 = C_i G C_i^T - 2 C_i G[:, i] + G[i, i],
so training and evaluating coefficient rules needs only the n x n matrix G, never the bank itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from lora_lab.config.errors import DataError
from lora_lab.meta.adapters import AdapterReader

DEFAULT_GRAM_MEMORY_BYTES = 1 << 30


def bank_gram_matrix(
    member_dirs: Sequence[str | Path], max_bytes: int = DEFAULT_GRAM_MEMORY_BYTES
) -> np.ndarray:
    """G[i, j] = <Theta_i, Theta_j>, summed tensor by tensor over the LoRA factors, float64.

    Inner products are additive over tensors, so G accumulates T_a T_b^T where T_a stacks one tensor of
    every member of block a as rows. Members are split into blocks whose stacked tensor fits `max_bytes`
    (two blocks are held at once); each pair of blocks streams every tensor once, so RAM holds two stacked
    tensors plus G and a bank of any size works. One block (the whole bank) when it fits: each file is read
    once. Products run in float32 (bf16/f32 members are exact in it); accumulation across tensors is float64.
    """
    if not member_dirs:
        raise ValueError("cannot compute the Gram matrix of an empty bank")
    n = len(member_dirs)
    gram = np.zeros((n, n), dtype=np.float64)
    with ExitStack() as stack:
        first = AdapterReader(member_dirs[0])
        stack.callback(first.close)
        keys = first.keys()
        largest = max(int(np.prod(first.shape(k))) for k in keys)
        block = max(1, min(n, max_bytes // (2 * 4 * largest)))
        blocks = [range(start, min(n, start + block)) for start in range(0, n, block)]
        for a, rows in enumerate(blocks):
            for cols in blocks[a:]:
                gram[np.ix_(rows, cols)] = _block_inner_products(member_dirs, rows, cols, keys)
                gram[np.ix_(cols, rows)] = gram[np.ix_(rows, cols)].T
    return gram


def _block_inner_products(
    member_dirs: Sequence[str | Path], rows: range, cols: range, keys: list[str]
) -> np.ndarray:
    with ExitStack() as stack:
        readers = {}
        for index in sorted(set(rows) | set(cols)):
            reader = AdapterReader(member_dirs[index])
            stack.callback(reader.close)
            if reader.keys() != keys:
                missing = sorted(set(keys) ^ set(reader.keys()))
                raise DataError(
                    f"{reader.path}: tensor {missing[0]!r} differs from the first member's tensors"
                )
            readers[index] = reader
        block = torch.zeros((len(rows), len(cols)), dtype=torch.float64)
        for key in keys:
            left = torch.stack([readers[i].tensor(key).reshape(-1) for i in rows])
            right = left if rows == cols else torch.stack([readers[j].tensor(key).reshape(-1) for j in cols])
            block += (left @ right.T).to(torch.float64)
        return block.numpy()


def reconstruction_error(
    coefficients: np.ndarray, gram: np.ndarray, target_indices: Sequence[int], relative: bool = True
) -> np.ndarray:
    """Per target: ||C_t Theta - Theta_target||^2 from G alone (divided by ||Theta_target||^2 if relative).

    `coefficients` is (n_targets, n_bank) over all bank members; `target_indices` are the targets' bank rows.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    targets = np.asarray(target_indices, dtype=np.int64)
    mixed = coefficients @ gram  # (t, n)
    errors = (mixed * coefficients).sum(axis=1) - 2.0 * mixed[np.arange(len(targets)), targets]
    errors += gram[targets, targets]
    errors = np.maximum(errors, 0.0)  # rounding; the true value is a squared norm
    return errors / gram[targets, targets] if relative else errors
