"""The device rule, in one place: `hardware.device=cuda` means CUDA, `auto` means CUDA when this machine has
it, `cpu` means the CPU. Device selection, the GaLore optimizer choice, the distributed backend and the
machine check all ask `wants_cuda`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lora_lab.config.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from omegaconf import DictConfig


def cuda_available() -> bool:
    import torch  # only when asked: config validation uses this module without loading torch

    return torch.cuda.is_available()


def wants_cuda(device: str, has_cuda: bool | None = None) -> bool:
    """Whether `hardware.device` asks for CUDA on a machine that has it (`has_cuda`, default: ask torch)."""
    if device == "cuda":
        return True
    return device == "auto" and (cuda_available() if has_cuda is None else has_cuda)


def select_device(hardware: DictConfig) -> torch.device:
    """The job's device (and CPU thread count); `cuda` on a machine without it is a config error."""
    import torch

    if hardware.num_threads:
        torch.set_num_threads(int(hardware.num_threads))
    if wants_cuda(hardware.device):
        if not cuda_available():
            raise ConfigError("hardware.device", "cuda", "no CUDA device is available", choices=["auto", "cpu"])
        return torch.device("cuda")
    return torch.device("cpu")
