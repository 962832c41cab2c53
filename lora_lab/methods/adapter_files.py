"""Checking a saved adapter folder from its files alone, before a base model is loaded for it.

A missing weights file, a truncated or corrupt safetensors file, a malformed `adapter_config.json` or method
record, an adapter trained on another base, or tensors whose shapes do not fit the model would otherwise
surface as a traceback from deep inside peft or safetensors, after the base model has loaded. Here each is one
DataError/ConfigError naming the file and the mismatch. Shapes come from safetensors headers (no tensor is
read) and are compared with the model's module layout, which is known from its config alone (an empty,
meta-device model) for most sources, and from the loaded model otherwise.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lora_lab.config.errors import ConfigError, DataError

# A PEFT adapter folder: these two files (the names peft writes), plus our method record. Defined here only.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
RECORD_FILE = "lora_lab_method.json"
WEIGHT_FILES = (ADAPTER_WEIGHTS, "adapter_model.bin")
PEFT_PREFIX = "base_model.model."
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
_MAX_HEADER = 100 * 2**20  # safetensors' own limit


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold an object: any problem is one DataError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text (a JSON file was expected)") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, after checking that the header parses and that every
    tensor's bytes lie inside the file and match its dtype and shape (a truncated copy fails here)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise DataError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(_MAX_HEADER, size - 8):
            raise DataError(f"{path}: corrupt or truncated safetensors file (header of {header_len} bytes, "
                            f"file of {size})")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
        assert isinstance(header, dict)
    except (UnicodeDecodeError, json.JSONDecodeError, AssertionError):
        raise DataError(f"{path}: corrupt safetensors header (not a JSON object)") from None
    data_size = size - 8 - header_len
    shapes: dict[str, tuple[int, ...]] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(n) for n in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{path}: corrupt safetensors header (entry {key!r})") from None
        if end > data_size:
            raise DataError(f"{path}: truncated: tensor {key!r} ends at byte {end} of the data, the file holds "
                            f"{data_size} bytes of data")
        if dtype in _DTYPE_BYTES and end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise DataError(f"{path}: corrupt: tensor {key!r} has {end - begin} bytes for shape {list(shape)} "
                            f"{dtype}")
        shapes[key] = shape
    return shapes


# A float is NaN or infinite exactly when all its exponent bits are set: (unsigned view, exponent mask).
_EXPONENT_BITS = {"F64": (np.uint64, 0x7FF0000000000000), "F32": (np.uint32, 0x7F800000),
                  "F16": (np.uint16, 0x7C00), "BF16": (np.uint16, 0x7F80)}
_FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_VALUES_CHECKED: set[tuple[str, int, int]] = set()  # (path, size, mtime): files whose values were found finite


def check_values(path: Path) -> None:
    """Every float tensor of a safetensors file (whose header `safetensors_shapes` has checked) must be finite.

    One pass over the memory-mapped data, an exponent-bit test per tensor in numpy (a per-tensor torch check
    costs more than reading a LoRA file), and once per file version in a process: the readers of a bank member
    (combine, mixture, few-shot search) all open it through here. Only a bad tensor is converted, to count it."""
    from lora_lab.utils.tensor_checks import check_finite

    path = Path(path)
    stat = path.stat()
    version = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if version in _VALUES_CHECKED:
        return
    with path.open("rb") as handle:
        (header_len,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_len).decode("utf-8"))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len) if stat.st_size > 8 + header_len \
        else np.zeros(0, dtype=np.uint8)
    for key, info in header.items():
        if key == "__metadata__" or info.get("dtype") not in _EXPONENT_BITS:
            continue
        begin, end = info["data_offsets"]
        unsigned, mask = _EXPONENT_BITS[info["dtype"]]
        bits = data[begin:end].view(unsigned)
        if ((bits & unsigned(mask)) == unsigned(mask)).any():
            values = torch.frombuffer(bytearray(data[begin:end]), dtype=_FLOAT_DTYPES[info["dtype"]])
            check_finite(values, f"{path}: tensor {key!r}")
    _VALUES_CHECKED.add(version)


@dataclass
class AdapterFiles:
    """What an adapter folder holds, checked: its config, its method record and its tensors' shapes."""

    folder: Path
    config: dict[str, Any]
    record: dict[str, Any]
    weights: Path
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def inspect_adapter(folder: str | Path, key: str = "adapter_path") -> AdapterFiles:
    """Check an adapter folder's files (config, record, every safetensors file) without loading a model."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(key, str(folder), "no such folder" if not folder.exists() else "not a folder")
    if not (folder / ADAPTER_CONFIG).is_file():
        raise ConfigError(key, str(folder), f"no {ADAPTER_CONFIG} in this folder")
    config = read_json_object(folder / ADAPTER_CONFIG)
    record = read_json_object(folder / RECORD_FILE) if (folder / RECORD_FILE).is_file() else {}
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise DataError(f"{folder}: no adapter weights ({' or '.join(WEIGHT_FILES)}); the save did not finish "
                        "or the folder was copied without them")
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        found = safetensors_shapes(path)
        check_values(path)
        if path == weights:
            shapes = found
    for name in ("r", "lora_alpha"):
        value = config.get(name)
        if name in config and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise DataError(f"{folder / ADAPTER_CONFIG}: field {name!r} is {value!r}, expected a positive number")
    return AdapterFiles(folder=folder, config=config, record=record, weights=weights, shapes=shapes)


def recorded_base(files: AdapterFiles) -> str | None:
    """The base model the adapter records: its hub id, else its model config name (None: not recorded)."""
    base = files.record.get("base_model")
    if isinstance(base, Mapping):
        return str(base.get("hub_id") or base.get("name") or "") or None
    declared = files.config.get("base_model_name_or_path")
    # a bare peft adapter names a hub id, or a folder that only existed where it was trained: ignore folders
    if isinstance(declared, str) and declared.count("/") == 1 and not declared.startswith((".", "/", "~")):
        return declared
    return None


def check_base_model(files: AdapterFiles, model_cfg: Any) -> None:
    """The model an adapter goes onto must be the one it was trained on (hub id or model config name)."""
    base = recorded_base(files)
    accepted = {str(v) for v in (model_cfg.get("hub_id"), model_cfg.get("name")) if v}
    if base is not None and base not in accepted:
        where = files.folder / (RECORD_FILE if files.record.get("base_model") else ADAPTER_CONFIG)
        raise ConfigError("model", model_cfg.get("name"),
                          f"the adapter in {files.folder} was trained on {base!r} ({where.name}); "
                          "pick the model config for that base")


def _features(module: torch.nn.Module) -> tuple[int, int] | None:
    """(in, out) of a linear-like module (nn.Linear and its 4-bit/8-bit subclasses, GPT-2's Conv1D)."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D":
        return int(module.weight.shape[0]), int(module.nf)
    return None


def check_shapes(files: AdapterFiles, model: torch.nn.Module, model_name: str) -> None:
    """Every LoRA factor must fit the module it adapts (A: (r, in), B: (out, r)); every other saved tensor
    that names a model parameter (GaLore deltas, a saved classifier head) must have that parameter's shape."""
    modules = dict(model.named_modules())
    params = {name: p for name, p in model.named_parameters() if getattr(p, "quant_state", None) is None
              and p.dtype not in (torch.uint8, torch.int8)}  # packed 4-/8-bit storage has no logical shape
    for key, shape in sorted(files.shapes.items()):
        name = key.removeprefix(PEFT_PREFIX)
        for suffix, axis, what in ((".lora_A.weight", 1, "inputs"), (".lora_B.weight", 0, "outputs")):
            if not name.endswith(suffix):
                continue
            module_name = name[: -len(suffix)]
            module = modules.get(module_name)
            if module is None:
                raise DataError(f"{files.weights}: tensor {key!r} adapts module {module_name!r}, which "
                                f"model={model_name} does not have (adapter trained on another base?)")
            features = _features(module)
            if features is not None and len(shape) == 2:
                expected = features[0] if axis == 1 else features[1]
                if shape[axis] != expected:
                    raise DataError(f"{files.weights}: tensor {key!r} has shape {list(shape)}, but "
                                    f"{module_name} of model={model_name} has {expected} {what} "
                                    "(adapter trained on another base?)")
            break
        else:
            param = params.get(name)
            if param is not None and tuple(param.shape) != shape:
                raise DataError(f"{files.weights}: tensor {key!r} has shape {list(shape)}, but model={model_name} "
                                f"has {list(param.shape)} (adapter trained on another base?)")
