"""The bank's Gram matrix G = Theta Theta^T over flattened adapters, and the reconstruction objective.

With Theta the (n, P) matrix of flattened LoRA factors (every lora_A and lora_B, concatenated), the squared
error of predicting task i as a mixture C_i Theta is
    ||C_i Theta - Theta_i||^2 = C_i G C_i^T - 2 C_i G[:, i] + G[i, i],
so training and evaluating coefficient rules needs only the n x n matrix G, never the bank itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from lora_lab.config.errors import DataError
from lora_lab.meta.lora_tensors import (
    TensorSpan,
    dtype_size,
    module_names,
    read_bytes_into,
    read_layout,
    tensor_from_bytes,
    weights_path,
)

DEFAULT_GRAM_MEMORY_BYTES = 512 << 20


def bank_gram_matrix(
    member_dirs: Sequence[str | Path], max_bytes: int = DEFAULT_GRAM_MEMORY_BYTES
) -> np.ndarray:
    """G[i, j] = <Theta_i, Theta_j> over all LoRA factors, float64, reading each adapter file exactly once.

    Inner products add up over any partition of the parameters. Members of a bank share one safetensors
    layout (same tensors, shapes, dtypes, hence byte offsets), so the data sections are split into *slabs*
    of consecutive bytes: for each slab, every member's slab is read with one sequential read into a row
    of S (n x slab, float32) and G += S S^T (float32 product, float64 accumulation), while the next slab is
    read in a background thread. RAM holds two slabs (at most `max_bytes` together) plus G, for a bank of
    any size; the disk sees large sequential reads, not page faults hopping between files tensor by tensor.
    """
    if not member_dirs:
        raise ValueError("cannot compute the Gram matrix of an empty bank")
    paths = [weights_path(d) for d in member_dirs]
    data_offset, spans = read_layout(paths[0])
    module_names([span.key for span in spans], paths[0])  # only LoRA factors may contribute
    offsets = [data_offset]
    for path in paths[1:]:
        offset, member_spans = read_layout(path)
        if member_spans != spans:
            differing = next((a.key for a, b in zip(spans, member_spans, strict=False) if a != b), "count")
            raise DataError(
                f"{path}: tensor layout differs from {paths[0]} (first difference: {differing!r})"
            )
        offsets.append(offset)
    n = len(paths)
    gram = torch.zeros((n, n), dtype=torch.float64)
    slabs = [
        (slab_start, min(end, slab_start + step), dtype)
        for start, end, dtype in _contiguous_runs(spans)
        for step in [max(1, max_bytes // (8 * n)) * dtype_size(dtype)]  # two slabs in flight, 4 B each
        for slab_start in range(start, end, step)
    ]
    with ExitStack() as stack:
        handles = [stack.enter_context(open(path, "rb")) for path in paths]
        prefetch = stack.enter_context(ThreadPoolExecutor(max_workers=1))

        def read_slab(slab: tuple[int, int, str]) -> torch.Tensor:
            start, end, dtype = slab
            width = end - start
            raw = bytearray(n * width)
            view = memoryview(raw)
            for row, (handle, offset) in enumerate(zip(handles, offsets, strict=True)):
                read_bytes_into(handle, offset, start, view[row * width : (row + 1) * width])
            return tensor_from_bytes(raw, dtype).view(n, -1).to(torch.float32), start, dtype  # one conversion

        def refuse_non_finite(slab: torch.Tensor, start: int, dtype: str, product: torch.Tensor) -> None:
            """A NaN or inf anywhere in a member's stretch makes its squared norm, the product's diagonal,
            non-finite: checked there (n numbers, free), the stretch is searched only to name the tensor, as
            every reader of member weights does."""
            for row in torch.nonzero(~torch.isfinite(product.diagonal())).flatten().tolist():
                bad = ~torch.isfinite(slab[row])
                if not bad.any():
                    continue  # finite values whose squares overflow float32: not a damaged file
                at = start + int(bad.nonzero()[0]) * dtype_size(dtype)
                key = next(span.key for span in spans if span.start <= at < span.end)
                raise DataError(f"{paths[row]}: tensor {key!r}: {int(bad.sum())} values in this stretch are NaN "
                                "or infinite (a damaged file, or the save of a diverged run); refusing to use it")

        pending = prefetch.submit(read_slab, slabs[0])
        for following in [*slabs[1:], None]:
            slab, start, dtype = pending.result()
            if following is not None:  # read the next slab while this one is multiplied
                pending = prefetch.submit(read_slab, following)
            product = slab @ slab.T
            refuse_non_finite(slab, start, dtype, product)
            gram += product.to(torch.float64)
    return gram.numpy()


def _contiguous_runs(spans: list[TensorSpan]) -> list[tuple[int, int, str]]:
    """Merge position-sorted spans into maximal byte ranges of one dtype."""
    runs: list[tuple[int, int, str]] = []
    for span in spans:
        if runs and runs[-1][1] == span.start and runs[-1][2] == span.dtype:
            runs[-1] = (runs[-1][0], span.end, span.dtype)
        else:
            runs.append((span.start, span.end, span.dtype))
    return runs


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
