"""The optimizer of the trainable parameters, by name (`train.optimizer`).

`adamw` is torch's. The paged variants are bitsandbytes': their state lives in CUDA unified memory and is paged
to the CPU when the GPU runs short, which lets a QLoRA run survive memory spikes (long sequences) on a small
card. Paging is a CUDA feature: on a CPU run they are refused in one line before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from lora_lab.registry import Registry

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter], float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer", "train.optimizer")


@OPTIMIZERS.register("adamw")
def adamw(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("paged_adamw_8bit")
def paged_adamw_8bit(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    import bitsandbytes as bnb

    return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("paged_adamw_32bit")
def paged_adamw_32bit(params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    import bitsandbytes as bnb

    return bnb.optim.PagedAdamW32bit(params, lr=lr, weight_decay=weight_decay)
