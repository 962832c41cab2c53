"""A merge is only a success if the merged model computes what the adapter computed.

Folding an adapter into its base is arithmetic that a library release can get wrong without any error (a head
that is trained and saved with the adapter but dropped on unload, a 4-bit weight merged before dequantising).
So every merge runs a few seeded probe inputs through the model before and after, and refuses a result whose
outputs differ beyond what float reassociation explains at the model's precision.
"""

from __future__ import annotations

import torch

from lora_lab.config.errors import DataError

PROBE_ROWS, PROBE_LENGTH, PROBE_SEED = 2, 12, 1234
# max |merged - unmerged| / max(1, max |unmerged|) allowed, by the merged model's float dtype: reassociating
# x·(W + BA) against x·W + (x·B)·A moves fp32 logits by ~1e-6 relative; half-precision storage rounds W + BA once
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6, torch.bfloat16: 6e-2, torch.float16: 2e-2}


class MergeMismatch(DataError):
    """The merged model's outputs differ from the adapter's on the probe inputs: its weights are not the model
    that was trained, and nothing is written."""

    kind = "merge"


def probe_inputs(model: torch.nn.Module) -> torch.Tensor:
    """Seeded token ids inside the model's vocabulary: the same probe before and after the merge."""
    vocab = int(getattr(model.config, "vocab_size", 0) or 0) or 32
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randint(0, vocab, (PROBE_ROWS, PROBE_LENGTH), generator=generator)


@torch.no_grad()
def probe_outputs(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    return model(input_ids=ids.to(device)).logits.float().cpu()


def float_dtype(model: torch.nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def check_merge(expected: torch.Tensor, merged: torch.nn.Module, ids: torch.Tensor, what: str) -> float:
    """The merged model's relative probe error; raises MergeMismatch above the dtype's tolerance."""
    got = probe_outputs(merged, ids)
    if got.shape != expected.shape:
        raise MergeMismatch(f"{what}: merged model's outputs have shape {tuple(got.shape)}, the adapter's "
                            f"{tuple(expected.shape)}; refusing the merge")
    scale = max(1.0, float(expected.abs().max()))
    error = float((got - expected).abs().max()) / scale if torch.isfinite(got).all() else float("inf")
    tolerance = TOLERANCE.get(float_dtype(merged), 6e-2)
    if not error <= tolerance:
        raise MergeMismatch(f"{what}: the merged model's outputs differ from the adapter's by {error:.3g} "
                            f"(relative; tolerance {tolerance:g} in {str(float_dtype(merged)).removeprefix('torch.')}) "
                            "on seeded probe inputs; refusing the merge")
    return error
