"""Shared test helpers (import as `from tests.helpers.lab_helpers import ...`): compose the real config tree with overrides, run jobs in temp dirs, find local data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from lora_lab.config.compose import compose_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("LORA_LAB_SHARED_DATA", REPO.parent / "shared" / "data"))

# Overrides that make any job finish in seconds on the tiny random model.
TINY = [
    "model=tiny", "task=arith", "task.num_train=64", "task.num_test=8", "task.eval_limit=8",
    "train.max_steps=4", "train.batch_size=4", "eval.batch_size=8", "print_summary=false",
]


def compose_cfg(overrides: list[str] | None = None, *, return_hydra_config: bool = False) -> DictConfig:
    return compose_config(overrides or [], return_hydra_config=return_hydra_config)


def tiny_cfg(*extra: str) -> DictConfig:
    return compose_cfg([*TINY, *extra])


def validated_cfg(*overrides: str, tiny: bool = True) -> DictConfig:
    """A composed AND schema-validated config (defaults filled in), for calling components directly."""
    from lora_lab.config.validate import validate_config

    return validate_config(tiny_cfg(*overrides) if tiny else compose_cfg(list(overrides)))


def shared_data(*parts: str) -> Path:
    """A path under the shared data folder, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"local data not present: {path}")
    return path

