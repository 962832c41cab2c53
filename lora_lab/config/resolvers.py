"""The custom `${...}` resolvers the YAML under conf/ uses, and the structured schemas they compose with.

Registered by everything that composes or loads a config (the CLI at import, `compose_config`, the rank entry,
the bank builder), so a saved `.hydra/config.yaml` resolves the same way outside the Hydra app.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from omegaconf import OmegaConf

from lora_lab.config.store import register_schemas


def _run_token() -> str:
    """Unique per invocation (two runs started in the same second get different dirs), and inherited through
    the environment so SLURM/submitit workers resolve the same sweep dir as the submitting process."""
    return os.environ.setdefault("LORA_LAB_RUN_TOKEN", secrets.token_hex(3))


def _data_dir(subfolder: str) -> str | None:
    """`${data_dir:sst2}` → `$LORA_LAB_DATA/sst2`, or null (the task's hub id) when LORA_LAB_DATA is unset."""
    root = os.environ.get("LORA_LAB_DATA")
    return str(Path(root).expanduser() / subfolder) if root else None


def register_resolvers() -> None:
    register_schemas()
    if not OmegaConf.has_resolver("run_token"):
        OmegaConf.register_new_resolver("run_token", _run_token)
    if not OmegaConf.has_resolver("data_dir"):
        OmegaConf.register_new_resolver("data_dir", _data_dir)
