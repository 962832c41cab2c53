"""Helpers for the method tests: a validated tiny config, a model with the method applied, a short training run.

`one_thread` is an autouse fixture: a test module that imports it runs with one intra-op thread.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass

import pytest
import torch
from omegaconf import DictConfig

from lora_lab.config.validate import validate_config
from lora_lab.methods import METHODS
from lora_lab.methods.base import Method
from lora_lab.models import load_model_and_tokenizer
from lora_lab.tasks import TASKS
from lora_lab.training.loop import TrainResult, train
from lora_lab.training.tokenize import tokenize_for_training

warnings.filterwarnings("ignore", message=".*Merge lora module to 4-bit linear.*")

from tests.helpers.lab_helpers import tiny_cfg  # noqa: E402

# Every registered fine-tuning method (kind "finetune": not `none` or `meta`), so a new one is covered at once.
ALL_METHODS = tuple(name for name in METHODS.names() if METHODS.get(name).kind == "finetune")
# Per-method overrides that make a few dozen tiny steps learn visibly (GaLore: full-parameter lr, small rank);
# a method without an entry gets LoRA's.
LEARNS = defaultdict(lambda: ["method.lr=1e-2"], {
    "lora": ["method.lr=1e-2"],
    "qlora": ["method.lr=1e-2"],
    "galore": ["method.lr=3e-3", "method.rank=8", "method.update_proj_gap=10"],
    "sparse_lora": ["method.lr=1e-2", "method.start_step=5", "method.end_step=15"],
    "rosa": ["method.lr=1e-2", "method.mask_warmup_steps=5", "method.density=0.05"],
    "hira": ["method.lr=1e-2"],
})


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is several times faster than two fighting over a busy CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def method_cfg(name: str, *overrides: str) -> DictConfig:
    """A validated tiny config for `method=name` (constant lr, no dropout, so losses are comparable)."""
    return validate_config(tiny_cfg(
        f"method={name}", "train.scheduler=constant", "train.warmup_ratio=0", "task.num_train=32",
        *(["method.dropout=0"] if name != "galore" else []), *overrides,
    ))


@dataclass
class Built:
    cfg: DictConfig
    method: Method
    model: torch.nn.Module
    tokenizer: object


def base_model(cfg: DictConfig, method: Method | None = None) -> torch.nn.Module:
    """The tiny base model, identical on every call (seeded), loaded the way the method loads it."""
    model, _ = load_model_and_tokenizer(cfg, method.model_load_kwargs() if method else {})
    return (method.prepare_loaded(model) if method else model).eval()


def build(cfg: DictConfig) -> Built:
    method = METHODS.get(cfg.method.name)(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg, method.model_load_kwargs())
    return Built(cfg, method, method.apply(method.prepare_loaded(model)), tokenizer)


def features(built: Built) -> list:
    task = TASKS.get(built.cfg.task.name)(built.cfg.task)
    return [tokenize_for_training(built.tokenizer, ex, False, 64) for ex in task.train_examples()]


def fit(built: Built) -> TrainResult:
    """`train.max_steps` optimizer steps of the shared loop (set it in the config: methods schedule by it)."""
    return train(built.model, features(built), built.method, built.cfg, pad_id=built.tokenizer.pad_token_id,
                 device=torch.device("cpu"))


def probe_ids(n: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(5, 90, (n, length), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def logits(model: torch.nn.Module, ids: torch.Tensor | None = None) -> torch.Tensor:
    model.eval()
    return model(input_ids=probe_ids() if ids is None else ids).logits.float()
