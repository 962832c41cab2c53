"""A saved adapter back on its base model, with the config it was trained under.

An adapter inside a run dir (`<run>/adapter`) has the run's composed config beside it (`<run>/.hydra/config.yaml`):
the same base model (hub id, local copy, or the seeded tiny model) and the same 4-bit loading come back. A
loose adapter folder falls back to the model and method named in its record (`lora_lab_method.json`).
Command-line overrides (`model.local_dir=...`) apply on top of either.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lora_lab.config.compose import compose_config
from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import validate_config
from lora_lab.methods import METHODS
from lora_lab.methods.adapter_files import ADAPTER_CONFIG
from lora_lab.methods.adapters import load_adapter, read_record
from lora_lab.models import load_model_and_tokenizer


def adapter_config(folder: Path, overrides: Sequence[str] = ()) -> DictConfig:
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ConfigError("adapter", str(folder), f"no {ADAPTER_CONFIG} in this folder")
    saved = folder.parent / ".hydra" / "config.yaml"
    if saved.is_file():
        cfg = OmegaConf.merge(OmegaConf.load(saved), OmegaConf.from_dotlist(list(overrides)))
        return validate_config(cfg)
    record = read_record(folder)
    base = (record.get("base_model") or {}).get("name")
    if not base or not record.get("method"):
        raise ConfigError("adapter", str(folder), "no run config beside it and no base model in its record; "
                          "pass model=<option> (and method=<name>)")
    return validate_config(compose_config([f"model={base}", f"method={record['method']}", *overrides]))


def load_with_adapter(folder: Path, overrides: Sequence[str] = ()):
    """(cfg, model with the adapter loaded unmerged, tokenizer)."""
    cfg = adapter_config(folder, overrides)
    method = METHODS.get(cfg.method.name)(cfg)
    base, tokenizer = load_model_and_tokenizer(cfg, method.model_load_kwargs())
    model = load_adapter(method.prepare_loaded(base), folder)
    return cfg, model.eval(), tokenizer
