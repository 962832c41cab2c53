"""Values read from outside are checked like their bytes: a weight that is NaN or infinite is a damaged file
(or the save of a diverged run), and is refused where it is read, naming the file and the tensor, so it can
never flow into a result labelled ok (a bank member's NaN into a generated adapter, a checkpoint's into a
resumed run)."""

from __future__ import annotations

import torch

from lora_lab.config.errors import DataError


def nonfinite_count(tensor: torch.Tensor) -> int:
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    if bool(torch.isfinite(tensor.sum())):  # a NaN or inf makes the sum non-finite: one reduction decides
        return 0
    return int((~torch.isfinite(tensor)).sum())  # a bad value, or finite values whose sum overflowed


def check_finite(tensor: torch.Tensor, where: str) -> torch.Tensor:
    """`tensor`, or a DataError naming `where` (a file and tensor name) when any value is NaN or infinite."""
    bad = nonfinite_count(tensor)
    if bad:
        raise DataError(f"{where}: {bad} of {tensor.numel()} values are NaN or infinite (a damaged file, or the "
                        "save of a diverged run); refusing to use it")
    return tensor
