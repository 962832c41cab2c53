"""What every job recipe receives: the validated config, its run dir, device and logger."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig


@dataclass
class JobContext:
    cfg: DictConfig
    run_dir: Path
    device: torch.device
    logger: Any
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def adapter_dir(self) -> Path:
        return self.run_dir / "adapter"


def select_device(hardware: DictConfig) -> torch.device:
    if hardware.num_threads:
        torch.set_num_threads(int(hardware.num_threads))
    if hardware.device == "cuda" or (hardware.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from lora_lab.config.errors import ConfigError

            raise ConfigError("hardware.device", "cuda", "no CUDA device is available", choices=["auto", "cpu"])
        return torch.device("cuda")
    return torch.device("cpu")
