"""What every job recipe receives: the validated config, its run dir, device (`utils/device.py` picks it) and
logger."""

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

