"""A bank of LoRA adapters, one per task, described by a `bank.json` index.

    {"base_model": "mistralai/Mistral-7B-Instruct-v0.2",
     "members": [{"name": "task081", "adapter": "adapters/task081",
                  "dataset": {...free-form reference the job resolves...},
                  "source": "optional source dataset, for leave-source-out"}]}

Adapter paths are relative to the bank dir. Members can only be combined if they adapt the same model with
the same rank, alpha and target modules and identical tensor shapes, so loading validates all of that and
names the first offending member, field, value and expected value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.meta.lora_tensors import AdapterReader, read_adapter_config
from lora_lab.methods.adapter_files import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from lora_lab.utils.io import atomic_write_text

BANK_INDEX = "bank.json"
LOTS_OF_LORAS_REPO = "Lots-of-LoRAs/{model}-4b-r16-{task}"
# Adapter-config fields that must agree across members for their factors to be mixable.
_MUST_MATCH = ("r", "lora_alpha", "target_modules", "use_rslora")


class BankValidationError(DataError):
    """A member that cannot be combined with the others."""


@dataclass(frozen=True)
class BankMember:
    name: str
    adapter_dir: Path
    dataset: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None


@dataclass(frozen=True)
class Bank:
    root: Path
    base_model: str
    members: tuple[BankMember, ...]
    rank: int
    lora_alpha: float
    target_modules: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    @property
    def sources(self) -> list[str | None]:
        return [m.source for m in self.members]

    @property
    def adapter_dirs(self) -> list[Path]:
        return [m.adapter_dir for m in self.members]

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise DataError(f"{self.root / BANK_INDEX}: no member named {name!r}") from None

    def __len__(self) -> int:
        return len(self.members)


def _normalised_field(config: Mapping[str, Any], name: str) -> Any:
    value = config.get(name)
    if name == "target_modules":  # PEFT stores a list (any order) or a regex string
        return tuple(sorted(value)) if isinstance(value, (list, tuple, set)) else value
    if name == "use_rslora":
        return bool(value)
    return value


def load_bank(root: str | Path, check_tensors: bool = True) -> Bank:
    """Read and validate `<root>/bank.json`; with `check_tensors`, also compare every member's tensor names
    and shapes (safetensors headers only, no weights are read)."""
    root = Path(root)
    index_path = root / BANK_INDEX
    if not index_path.is_file():
        raise DataError(f"{index_path}: missing; a bank dir needs a {BANK_INDEX} index")
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{index_path}: line {error.lineno}: invalid JSON ({error.msg})") from error
    if not isinstance(index, dict):
        raise DataError(f"{index_path}: expected a JSON object, got {type(index).__name__}")
    for key in ("base_model", "members"):
        if key not in index:
            raise DataError(f"{index_path}: missing field {key!r}")
    if not isinstance(index["members"], list) or not index["members"]:
        raise DataError(f"{index_path}: field 'members' must be a non-empty list")
    members = []
    seen: set[str] = set()
    for position, entry in enumerate(index["members"]):
        if not isinstance(entry, dict):
            raise DataError(f"{index_path}: members[{position}] is not an object")
        for key in ("name", "adapter"):
            if key not in entry:
                raise DataError(f"{index_path}: members[{position}] has no field {key!r}")
        if entry["name"] in seen:
            raise DataError(f"{index_path}: members[{position}]: name {entry['name']!r} appears twice")
        seen.add(entry["name"])
        if not isinstance(entry["adapter"], str) or not entry["adapter"]:
            raise DataError(f"{index_path}: members[{position}]: field 'adapter' must be a relative folder path")
        members.append(
            BankMember(
                name=entry["name"],
                adapter_dir=(root / entry["adapter"]).resolve(),
                dataset=entry.get("dataset", {}),
                source=entry.get("source"),
            )
        )
    return validate_members(root, index["base_model"], members, check_tensors)


def validate_members(
    root: Path, base_model: str, members: Sequence[BankMember], check_tensors: bool = True
) -> Bank:
    """All members must share base model, rank, alpha, target modules (and tensor shapes). Every member is
    checked before anything is refused, so one error names every bad member (a bank is all or nothing: a
    combination over a bank with a member silently left out would be another bank)."""
    problems: list[DataError] = []
    reference_config = None
    reference: dict[str, Any] = {}
    reference_shapes: dict[str, tuple[int, ...]] | None = None
    for member in members:
        try:
            config = read_adapter_config(member.adapter_dir)
            if reference_config is None:
                reference_config, first = config, member
                reference = {name: _normalised_field(config, name) for name in _MUST_MATCH}
            reference_shapes = _check_member(member, config, base_model, reference, reference_shapes, first,
                                             check_tensors)
        except DataError as err:
            problems.append(err)
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise type(problems[0])(problems[0].args[0] if len(problems) == 1 else
                                f"{len(problems)} of {len(members)} bank members are unusable: "
                                + "; ".join(str(p) for p in problems[:3]) + more)
    return Bank(
        root=Path(root),
        base_model=base_model,
        members=tuple(members),
        rank=int(reference["r"]),
        lora_alpha=reference["lora_alpha"],
        target_modules=tuple(reference["target_modules"])
        if isinstance(reference["target_modules"], tuple)
        else (reference["target_modules"],),
    )


def _check_member(member: BankMember, config: Mapping[str, Any], base_model: str, reference: dict[str, Any],
                  reference_shapes: dict[str, tuple[int, ...]] | None, first: BankMember,
                  check_tensors: bool) -> dict[str, tuple[int, ...]] | None:
    """One member against the bank's base model and the first readable member; returns the reference shapes."""
    member_base = config.get("base_model_name_or_path")
    if member_base is not None and member_base != base_model:
        raise BankValidationError(
            f"bank member {member.name!r}: field 'base_model_name_or_path' is {member_base!r}, "
            f"expected {base_model!r} (the bank's base_model)"
        )
    for name, expected in reference.items():
        value = _normalised_field(config, name)
        if value != expected:
            raise BankValidationError(
                f"bank member {member.name!r}: field {name!r} is {value!r}, "
                f"expected {expected!r} (as in member {first.name!r})"
            )
    if not check_tensors:
        return reference_shapes
    reader = AdapterReader(member.adapter_dir)
    shapes = {key: reader.shape(key) for key in reader.keys()}
    reader.close()
    if reference_shapes is None:
        return shapes
    if shapes != reference_shapes:
        key = sorted(set(shapes) ^ set(reference_shapes)) or sorted(
            k for k in shapes if shapes[k] != reference_shapes[k]
        )
        key = key[0]
        raise BankValidationError(
            f"bank member {member.name!r}: tensor {key!r} has shape {shapes.get(key)}, "
            f"expected {reference_shapes.get(key)} (as in member {first.name!r})"
        )
    return reference_shapes


def check_bank_model(bank: Bank, model_cfg: Any) -> None:
    """The model a meta job loads must be the one the bank was trained on (its hub id or config name)."""
    accepted = {str(v) for v in (model_cfg.get("hub_id"), model_cfg.get("name")) if v}
    if bank.base_model not in accepted:
        raise ConfigError("model", model_cfg.get("name"), f"the bank in {bank.root} was trained on "
                          f"{bank.base_model!r}; pick the model config for that base")


def write_bank_index(root: str | Path, base_model: str, members: Iterable[Mapping[str, Any]]) -> Path:
    """Write `bank.json` (members: dicts with name, adapter (relative path), dataset, source)."""
    path = Path(root) / BANK_INDEX
    atomic_write_text(path, json.dumps({"base_model": base_model, "members": list(members)}, indent=2) + "\n")
    return path


def lots_of_loras_task(task: str | int) -> str:
    """`81`, `"081"`, `"task081"` or `"task081_some_name"` -> `"task081"` (the adapter repos' spelling)."""
    match = re.fullmatch(r"(?:task)?(\d+)(?:_.*)?", str(task))
    if match is None:
        raise DataError(f"Lots-of-LoRAs task {task!r}: expected a task number like 81 or 'task081_name'")
    return f"task{int(match.group(1)):03d}"


def download_lots_of_loras_bank(
    tasks: Sequence[str | int],
    root: str | Path,
    base_model: str | None = None,
    repo_model: str = "Mistral-7B-Instruct-v0.2",
    datasets: Mapping[str, Mapping[str, Any]] | None = None,
    revision: str | None = None,
) -> Bank:
    """Fetch Lots-of-LoRAs adapters (`Lots-of-LoRAs/<model>-4b-r16-task<ID>`) into `<root>/adapters/` and
    write the index. Needs the Hugging Face hub. `base_model` defaults to the first adapter's
    `base_model_name_or_path`. `datasets` maps a task to its dataset reference; by default the reference is
    `{"sni_task": <the task as given>}`."""
    from huggingface_hub import snapshot_download  # only needed online

    root = Path(root)
    entries = []
    for task in tasks:
        name = lots_of_loras_task(task)
        local = root / "adapters" / name
        snapshot_download(
            repo_id=LOTS_OF_LORAS_REPO.format(model=repo_model, task=name),
            revision=revision,
            local_dir=str(local),
            allow_patterns=[ADAPTER_CONFIG, ADAPTER_WEIGHTS],
        )
        reference = (datasets or {}).get(name) or (datasets or {}).get(str(task)) or {"sni_task": str(task)}
        entries.append({"name": name, "adapter": f"adapters/{name}", "dataset": dict(reference)})
    if base_model is None:
        base_model = read_adapter_config(root / entries[0]["adapter"]).get("base_model_name_or_path", "")
    write_bank_index(root, base_model, entries)
    return load_bank(root)
