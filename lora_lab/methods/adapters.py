"""Saved adapters of every method: one record file names the method and its format; one registry loads and merges.

peft-format adapters (lora, qlora, sparse_lora, hira) load with plain `peft.PeftModel.from_pretrained`. RoSA adds
a sparse file beside its peft adapter and GaLore saves full-weight deltas, so a caller that only knows a folder
goes through `load_adapter` / `merge_adapter`, which read `lora_lab_method.json` and never branch on the method.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lora_lab.methods.adapter_files import RECORD_FILE, read_json_object
from lora_lab.methods.merge_check import check_merge, probe_inputs, probe_outputs
from lora_lab.models import DTYPES
from lora_lab.registry import Registry


def _float_base(record: dict[str, Any]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class AdapterFormat:
    """How a saved adapter goes back onto a base model (`load`) and into its weights (`merge`), and which
    model-load kwargs rebuild the base it was trained on from its record (`base`, e.g. a 4-bit quantisation)."""

    load: Callable[[torch.nn.Module, Path], torch.nn.Module]
    merge: Callable[[torch.nn.Module, Path], torch.nn.Module]
    base: Callable[[dict[str, Any]], dict[str, Any]] = _float_base


ADAPTER_FORMATS: Registry = Registry("adapter format", f"{RECORD_FILE}:format")


def method_record(cfg: DictConfig, fmt: str, **extra: Any) -> dict[str, Any]:
    """What a reader needs to know about an adapter beyond its tensors: method, format, hyper-parameters."""
    return {
        "method": str(cfg.method.name),
        "format": fmt,
        "hyperparameters": OmegaConf.to_container(cfg.method, resolve=True),
        "base_model": {"name": str(cfg.model.name), "hub_id": cfg.model.get("hub_id"),
                       "dtype": str(cfg.model.get("dtype", "auto"))},
        **extra,
    }


def write_record(folder: Path, record: dict[str, Any]) -> None:
    (Path(folder) / RECORD_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_record(folder: Path) -> dict[str, Any]:
    """The folder's method record; a bare peft adapter (no record) reads as format `peft`."""
    path = Path(folder) / RECORD_FILE
    if path.is_file():
        return {"format": "peft", **read_json_object(path)}
    return {"method": None, "format": "peft"}


def base_load_kwargs(folder: Path) -> dict[str, Any]:
    """Model-load kwargs that rebuild the base this adapter was trained on (its format decides: 4-bit for
    QLoRA), plus the recorded weight dtype; empty for an adapter that records neither."""
    record = read_record(folder)
    kwargs = dict(ADAPTER_FORMATS.get(record["format"]).base(record))
    dtype = (record.get("base_model") or {}).get("dtype")
    if dtype and dtype != "auto":
        if dtype in DTYPES:
            kwargs.setdefault("dtype", DTYPES[dtype])
    return kwargs


def load_adapter(base: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Put the adapter in `folder` onto `base` (unmerged where the format allows it)."""
    return ADAPTER_FORMATS.get(read_record(folder)["format"]).load(base, Path(folder))


def merge_adapter(model: torch.nn.Module, folder: Path, *, check: bool = True) -> torch.nn.Module:
    """Fold a loaded adapter into the base weights and return the plain base model. `check`: the merged model
    must reproduce the adapter's outputs on seeded probe inputs (`merge_check`), else MergeMismatch."""
    merge = ADAPTER_FORMATS.get(read_record(folder)["format"]).merge
    if not check:
        return merge(model, Path(folder))
    ids = probe_inputs(model)
    expected = probe_outputs(model, ids)
    merged = merge(model, Path(folder))
    check_merge(expected, merged, ids, f"merge of {folder}")
    return merged


def load_merged(base: torch.nn.Module, folder: Path) -> torch.nn.Module:
    return merge_adapter(load_adapter(base, folder), folder)


def _load_peft(base: torch.nn.Module, folder: Path) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder))


def _merge_peft(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    return model.merge_and_unload()


ADAPTER_FORMATS.add("peft", AdapterFormat(load=_load_peft, merge=_merge_peft))
