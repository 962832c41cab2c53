"""Reading and writing PEFT LoRA adapter directories without loading a model.

A member is `adapter_config.json` + `adapter_model.safetensors` with keys `<module>.lora_A.weight` (r, d_in)
and `<module>.lora_B.weight` (d_out, r). Tensors are read one at a time from memory-mapped safetensors, in
float32, so RAM holds what is being combined rather than whole adapters.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.methods.adapter_files import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    check_values,
    read_json_object,
    safetensors_shapes,
)
from lora_lab.utils.io import atomic_directory
from lora_lab.utils.tensor_checks import check_finite

_A_SUFFIX = ".lora_A.weight"
_B_SUFFIX = ".lora_B.weight"

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def read_adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    path = Path(adapter_dir) / ADAPTER_CONFIG
    if not path.is_file():
        raise DataError(f"{path}: missing; a PEFT adapter dir needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    return read_json_object(path)


def weights_path(adapter_dir: str | Path) -> Path:
    """The weights file, after checking its safetensors header (a truncated or corrupt copy is one line)."""
    path = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not path.is_file():
        raise DataError(f"{path}: missing; a PEFT adapter dir needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
    safetensors_shapes(path)
    return path


def lora_scale(config: Mapping[str, Any]) -> float:
    """The factor PEFT multiplies B @ A by: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    rank, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def alpha_for_scale(scale: float, rank: int, use_rslora: bool) -> float:
    """lora_alpha that gives `scale` at `rank`: a combined adapter of a new rank keeps the members' scale."""
    return scale * math.sqrt(rank) if use_rslora else scale * rank


def module_names(keys: Iterator[str] | list[str], source: str | Path) -> list[str]:
    """Module prefixes that have both factors; anything else (biases, modules_to_save) is an error."""
    keys = list(keys)
    a_modules = {k[: -len(_A_SUFFIX)] for k in keys if k.endswith(_A_SUFFIX)}
    b_modules = {k[: -len(_B_SUFFIX)] for k in keys if k.endswith(_B_SUFFIX)}
    other = sorted(k for k in keys if not (k.endswith(_A_SUFFIX) or k.endswith(_B_SUFFIX)))
    if other:
        raise DataError(
            f"{source}: tensor {other[0]!r} is not a LoRA factor; only lora_A/lora_B can be combined"
        )
    unpaired = sorted(a_modules ^ b_modules)
    if unpaired:
        raise DataError(f"{source}: module {unpaired[0]!r} has only one of lora_A / lora_B")
    return sorted(a_modules, key=_natural_key)


def _natural_key(name: str) -> list[Any]:
    """layers.2 before layers.10, so outputs list modules in model order."""
    return [int(part) if part.isdigit() else part for part in name.split(".")]


class AdapterReader:
    """An open, memory-mapped adapter: factors come out as float32 tensors, one module at a time."""

    def __init__(self, adapter_dir: str | Path):
        self.adapter_dir = Path(adapter_dir)
        self.path = weights_path(adapter_dir)
        check_values(self.path)  # a NaN or inf weight is refused here, naming file and tensor (once per file)
        self._handle = safe_open(str(self.path), framework="pt")
        self.modules = module_names(self._handle.keys(), self.path)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(key).get_shape())

    def dtype(self) -> torch.dtype:
        """Storage dtype of the factors (read from the header, no tensor is loaded)."""
        stored = self._handle.get_slice(self.modules[0] + _A_SUFFIX).get_dtype()
        return _SAFETENSORS_DTYPES.get(stored, torch.float32)

    def tensor(self, key: str) -> torch.Tensor:
        return self.stored(key).to(torch.float32)

    def stored(self, key: str) -> torch.Tensor:
        """One tensor in its stored dtype (its values were checked finite when the file was opened)."""
        return self._handle.get_tensor(key)

    def factors(self, module: str, as_float32: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(A (r, d_in), B (d_out, r)), in float32 or (as_float32=False) in the stored dtype."""
        if module not in self.modules:
            raise DataError(f"{self.path}: has no LoRA module {module!r}")
        if as_float32:
            return self.tensor(module + _A_SUFFIX), self.tensor(module + _B_SUFFIX)
        return self.stored(module + _A_SUFFIX), self.stored(module + _B_SUFFIX)

    def keys(self) -> list[str]:
        return [m + suffix for m in self.modules for suffix in (_A_SUFFIX, _B_SUFFIX)]

    def close(self) -> None:
        self._handle = None  # the mmap is released with the handle


@dataclass(frozen=True)
class TensorSpan:
    """Where one tensor's bytes lie in a safetensors file (offsets relative to the data section)."""

    key: str
    dtype: str  # safetensors spelling: "BF16", "F32", "F16"
    shape: tuple[int, ...]
    start: int
    end: int


def read_layout(path: str | Path) -> tuple[int, list[TensorSpan]]:
    """(data section offset, spans sorted by position) from the safetensors header: 8-byte little-endian
    header length, then a JSON header. Lets callers read byte ranges directly instead of page-faulting."""
    with open(path, "rb") as handle:
        (header_length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_length))
    header.pop("__metadata__", None)
    spans = [
        TensorSpan(key, entry["dtype"], tuple(entry["shape"]), *entry["data_offsets"])
        for key, entry in header.items()
    ]
    for span in spans:
        if span.dtype not in _SAFETENSORS_DTYPES:
            raise DataError(
                f"{path}: tensor {span.key!r} has dtype {span.dtype}; expected one of F32, BF16, F16"
            )
    return 8 + header_length, sorted(spans, key=lambda span: span.start)


def read_bytes_into(handle: BinaryIO, data_offset: int, start: int, out: memoryview) -> None:
    """Fill `out` with the bytes at [start, start + len(out)) of the data section (one sequential read)."""
    handle.seek(data_offset + start)
    if handle.readinto(out) != len(out):
        raise DataError(f"{getattr(handle, 'name', 'safetensors file')}: truncated tensor data")


def tensor_from_bytes(buffer: bytearray, dtype: str) -> torch.Tensor:
    """Reinterpret raw safetensors bytes as a flat tensor of the stored dtype (no copy)."""
    return torch.frombuffer(buffer, dtype=_SAFETENSORS_DTYPES[dtype])


def dtype_size(dtype: str) -> int:
    return _SAFETENSORS_DTYPES[dtype].itemsize


def factor_keys(module: str) -> tuple[str, str]:
    return module + _A_SUFFIX, module + _B_SUFFIX


def resolve_dtype(name: str | None, default: torch.dtype) -> torch.dtype:
    if name is None:
        return default
    if name not in DTYPES:
        raise ConfigError("output_dtype", name, "unknown dtype", choices=sorted(DTYPES))
    return DTYPES[name]


def write_adapter(
    out_dir: str | Path, tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]
) -> Path:
    """Write an ordinary PEFT adapter dir atomically; a non-finite tensor is refused before anything is written."""
    for key, tensor in tensors.items():
        check_finite(tensor, f"{out_dir}: generated tensor {key!r}")
    with atomic_directory(out_dir) as staging:
        contiguous = {key: tensor.contiguous() for key, tensor in tensors.items()}
        save_file(contiguous, str(staging / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (staging / ADAPTER_CONFIG).write_text(json.dumps(dict(config), indent=2, sort_keys=True) + "\n",
                                              encoding="utf-8")
    return Path(out_dir)
