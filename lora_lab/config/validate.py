"""Check a composed config against the schemas before anything heavy happens.

Hydra already rejects overrides of keys that are not in the composed YAML; this catches the rest: keys added
with `+`, keys typed into a YAML file, wrong types, values outside a field's choices, and cross-field rules a
method or task declares. Each problem becomes one `ConfigError` naming the key, the value and the choices.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lora_lab.config import schema as S
from lora_lab.config.errors import ConfigError
from lora_lab.config.targets import translate_method_targets
from lora_lab.utils import cpu
from lora_lab.utils.device import wants_cuda

FIXED_SECTIONS: dict[str, type] = {
    "model": S.ModelConfig,
    "metric": S.MetricConfig,
    "hardware": S.HardwareConfig,
    "logger": S.LoggerConfig,
    "train": S.TrainConfig,
    "eval": S.EvalConfig,
}
SELECTED_SECTIONS = ("task", "method")  # schema chosen by the section's `name`
ROOT_KEYS = {f.name for f in dataclasses.fields(S.RootConfig)}


def check_section(prefix: str, node: Any, schema_cls: type) -> DictConfig:
    """Merge `node` into `schema_cls`, translating OmegaConf's errors into one clear line."""
    if not isinstance(node, DictConfig):
        raise ConfigError(prefix, node, "expected a mapping of keys")
    allowed = [f.name for f in dataclasses.fields(schema_cls)]
    for key in node.keys():
        if key not in allowed:
            raise ConfigError(f"{prefix}.{key}", node.get(key), "unknown key", choices=allowed)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema_cls), node)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
        expected = getattr(err, "ref_type", None) or getattr(err, "object_type", None)
        raise ConfigError(
            f"{prefix}.{key}", getattr(err, "value", None), f"wrong type: {_first_line(err)}"
            + (f" (expected {expected})" if expected else "")
        ) from None
    hints = typing.get_type_hints(schema_cls)  # the fields' types as classes (annotations are strings here)
    for field in dataclasses.fields(schema_cls):
        value = merged[field.name]
        choices = field.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{prefix}.{field.name}", value, "not an allowed value", choices=choices)
        domain = field.metadata.get("domain")
        if domain is not None and not domain.allows(value):
            finite = "" if isinstance(value, int) or value is None or math.isfinite(value) else "a finite number "
            raise ConfigError(f"{prefix}.{field.name}", value, f"must be {finite}{domain}")
        nested = hints.get(field.name)
        if isinstance(nested, type) and dataclasses.is_dataclass(nested):
            check_section(f"{prefix}.{field.name}", node.get(field.name, OmegaConf.create({})), nested)
    return merged


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def check_machine(cfg: DictConfig, *, cuda_devices: int, cpu_cores: int, launched: bool) -> None:
    """What this machine can honour, checked before any rank is spawned: CUDA for `hardware.device=cuda` and
    NCCL, and no more local processes than GPUs (CUDA) or cores (CPU). Inside a launch (torchrun, SLURM tasks)
    the launcher decided the process count, so it is not checked again."""
    hw = cfg.hardware
    if hw.device == "cuda" and cuda_devices == 0:
        raise ConfigError("hardware.device", "cuda", "no CUDA device on this machine", choices=["auto", "cpu"])
    if hw.distributed_backend == "nccl" and cuda_devices == 0 and (hw.num_processes > 1 or launched):
        raise ConfigError("hardware.distributed_backend", "nccl", "needs CUDA; this machine has none",
                          choices=["auto", "gloo"])
    on_cuda = wants_cuda(hw.device, has_cuda=cuda_devices > 0)
    if not on_cuda:
        check_cpu_precision(hw.precision)
        if cfg.train.optimizer in S.CUDA_ONLY_OPTIMIZERS:
            raise ConfigError("train.optimizer", cfg.train.optimizer, "pages optimizer state between GPU and CPU "
                              "memory (bitsandbytes); this run is on the CPU", choices=["adamw"])
    if launched or hw.num_processes <= 1:
        return
    limit, what = (cuda_devices, "CUDA devices") if on_cuda else (cpu_cores, "CPU cores")
    if hw.num_processes > limit:
        raise ConfigError("hardware.num_processes", hw.num_processes,
                          f"must be <= {limit}, the {what} of this machine")


def check_cpu_precision(precision: str) -> None:
    """On CPU, bf16 autocast runs where the CPU has bf16 units; elsewhere it would be emulated (slower than
    float32), and float16 autocast has no fast CPU path — refused, not silently run in float32."""
    if precision == "float32" or (precision == "bfloat16" and cpu.bf16_supported()):
        return
    able = ["float32", "bfloat16"] if cpu.bf16_supported() else ["float32"]
    why = ("this CPU has no bf16 units (cpu flags avx512_bf16 / amx_bf16)" if precision == "bfloat16"
           else "not supported on CPU")
    raise ConfigError("hardware.precision", precision, why, choices=able)


def check_sharding(cfg: DictConfig, methods) -> None:
    """FSDP shards weights across ranks: only plain-PEFT methods, and no mid-run checkpoints (rank 0 alone
    would save a shard)."""
    if cfg.hardware.data_parallel != "fsdp" or methods.get(cfg.method.name).kind != "finetune":
        return
    if cfg.hardware.num_processes < 2:
        raise ConfigError("hardware.data_parallel", "fsdp", "shards the model across processes; set "
                          "hardware.num_processes >= 2 (e.g. hardware=cpu_ddp), or use ddp", choices=["ddp"])
    if not methods.get(cfg.method.name).supports_fsdp:
        able = sorted(n for n in methods.names() if methods.get(n).supports_fsdp)
        raise ConfigError("hardware.data_parallel", "fsdp", f"method={cfg.method.name} cannot be sharded; "
                          f"use ddp, or one of these methods", choices=able)
    if cfg.train.checkpoint_every or cfg.resume:
        raise ConfigError("train.checkpoint_every", cfg.train.checkpoint_every,
                          "checkpoints and resume are not supported with hardware.data_parallel=fsdp; set 0")


def task_keys(name: str | None = None) -> set[str]:
    """The keys of one task's schema, or of any task's (the union) when `name` is None."""
    from lora_lab.tasks import TASKS  # upward on purpose: task schemas live next to the tasks

    names = [name] if name is not None else TASKS.names()
    return {f.name for n in names for f in dataclasses.fields(TASKS.get(n).schema)}


def other_task_keys(cfg: DictConfig) -> list[str]:
    """`task.<key>` entries the selected task's schema lacks but another task's has: in a sweep over tasks an
    override is meant for the tasks that have the key (`-m task=arith,sst2 task.max_input_chars=500`), so for
    this task it is set aside, not an error. A key that no task has stays an error (`check_section`)."""
    from lora_lab.tasks import TASKS  # upward on purpose: task schemas live next to the tasks

    task = cfg.get("task")
    if not isinstance(task, DictConfig) or task.get("name") not in TASKS:
        return []
    own, anywhere = task_keys(task.name), task_keys()
    return [f"task.{key}" for key in task.keys() if key not in own and key in anywhere]


def check_task_keys_exist(cfg: DictConfig) -> None:
    """A multirun's `task.<key>` that no task has: refused once, before any job starts (each job would refuse
    it anyway, in one line of its own)."""
    task = cfg.get("task")
    if not isinstance(task, DictConfig):
        return
    anywhere = task_keys()
    for key, value in OmegaConf.to_container(task, resolve=False).items():
        if key not in anywhere:
            raise ConfigError(f"task.{key}", value, "unknown key of every task", choices=sorted(anywhere))


def validate_config(cfg: DictConfig) -> DictConfig:
    """Return a resolved, schema-checked copy of `cfg`; raise `ConfigError` on the first problem."""
    # upward on purpose: the schemas live next to the methods/tasks (docs/architecture.md)
    from lora_lab.methods import METHODS
    from lora_lab.tasks import TASKS

    try:
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    except OmegaConfBaseException as err:
        raise ConfigError(getattr(err, "full_key", "?"), None, f"cannot resolve: {_first_line(err)}") from None

    sections = {**FIXED_SECTIONS}
    for key in resolved.keys():
        if key not in sections and key not in SELECTED_SECTIONS and key not in ROOT_KEYS and key != "experiment":
            raise ConfigError(
                str(key), resolved.get(key), "unknown top-level key",
                choices=sorted([*sections, *SELECTED_SECTIONS, *ROOT_KEYS]),
            )
    out: dict[str, Any] = {}
    for key in ROOT_KEYS:
        if key in resolved:
            out[key] = resolved[key]
    root = check_section("<root>", OmegaConf.create(out), S.RootConfig)

    validated = OmegaConf.create(OmegaConf.to_container(root))
    for key, schema_cls in sections.items():
        validated[key] = check_section(key, resolved.get(key, OmegaConf.create({})), schema_cls)

    registries = {"task": TASKS, "method": METHODS}
    for key in SELECTED_SECTIONS:
        node = resolved.get(key)
        if node is None or "name" not in node:
            raise ConfigError(f"{key}.name", None, f"no {key} selected", choices=registries[key].names())
        entry = registries[key].get(node.name)
        if key == "task":  # another task's keys are set aside (other_task_keys); jobs/ignored_keys.py says so
            aside = {name.removeprefix("task.") for name in other_task_keys(resolved)}
            node = OmegaConf.create({k: v for k, v in node.items() if k not in aside})
        validated[key] = check_section(key, node, entry.schema)
    translate_method_targets(validated)  # Llama-style target names → this model family's (config/targets.py)

    METHODS.get(validated.method.name).check(validated)
    TASKS.get(validated.task.name).check(validated)
    check_sharding(validated, METHODS)
    OmegaConf.set_readonly(validated, True)
    return validated
