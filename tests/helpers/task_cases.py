"""Helpers for the task and evaluation tests: configs for any task on the tiny model, with local data."""

from __future__ import annotations

from omegaconf import DictConfig

from tests.helpers.lab_helpers import compose_cfg, shared_data

# Overrides that make a job on any task finish in seconds on the tiny random model.
TINY_TASK = ["model=tiny", "train.max_steps=4", "train.batch_size=4", "train.max_seq_len=256", "eval.batch_size=8",
             "print_summary=false"]

# task name -> (shared data subfolder, extra overrides that keep the tiny run short)
LOCAL = {
    "gsm8k": ("gsm8k", ["task.max_new_tokens=8"]),
    "sst2": ("sst2", []),
    "imdb": ("imdb", ["task.max_input_chars=300"]),
    "agnews": ("agnews", ["task.max_input_chars=300"]),
    "news_summary": ("news_summary", ["task.max_new_tokens=8", "task.max_input_chars=300"]),
    "wikitext2": ("wikitext2", ["task.context=64", "task.stride=48", "task.max_eval_tokens=1500",
                                "task.train_split=validation", "task.train_chunk_chars=200"]),
    "sni": ("sni", ["task.max_new_tokens=8"]),
}


def task_cfg(task: str, *extra: str) -> DictConfig:
    """Composed (not yet validated) config for `task` on the tiny model, reading the shared local data."""
    folder, overrides = LOCAL[task]
    return compose_cfg([*TINY_TASK, f"task={task}", f"task.data_dir={shared_data(folder)}", *overrides, *extra])
