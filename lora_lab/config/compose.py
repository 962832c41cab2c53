"""The root config as `lora-lab` composes it, for code that runs outside the Hydra app."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lora_lab.config.resolvers import register_resolvers

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def find_conf_dir() -> Path:
    """The config tree: `conf/` beside the package in a source checkout (an editable install included), else the
    copy a wheel ships inside the package (`lora_lab/conf`, mapped from the repo's `conf/` in pyproject.toml)."""
    for candidate in (PACKAGE_DIR.parent / "conf", PACKAGE_DIR / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no lora-lab config tree (config.yaml) beside or inside {PACKAGE_DIR}")


CONF_DIR = find_conf_dir()


def compose_config(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """The root config with these overrides, composed as `lora-lab` composes it (schemas and resolvers in
    place), for code that runs outside the Hydra app: benchmarks, the meta study, tests. Not validated."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)
