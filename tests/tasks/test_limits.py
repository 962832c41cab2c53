"""`task.eval_limit` / `task.train_limit`: deterministic, seeded, order-keeping subsets."""

from __future__ import annotations

import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import validate_config
from lora_lab.tasks import TASKS
from tests.helpers.task_cases import task_cfg


def examples(*overrides: str):
    cfg = validate_config(task_cfg("news_summary", *overrides))
    task = TASKS.get("news_summary")(cfg.task)
    return task.train_examples(), task.eval_examples()


def test_limits_pick_the_same_subset_every_time():
    train_a, eval_a = examples("task.train_limit=20", "task.eval_limit=10")
    train_b, eval_b = examples("task.train_limit=20", "task.eval_limit=10")
    assert len(train_a) == 20 and len(eval_a) == 10
    assert [e.target for e in train_a] == [e.target for e in train_b]
    assert [e.target for e in eval_a] == [e.target for e in eval_b]


def test_subsets_keep_file_order_and_depend_on_the_seed():
    _, full = examples("task.eval_limit=null")
    _, picked = examples("task.eval_limit=10")
    _, other = examples("task.eval_limit=10", "task.seed=1")
    positions = [full.index(e) for e in picked]
    assert positions == sorted(positions)
    assert [e.target for e in picked] != [e.target for e in other]


def test_limit_above_size_keeps_everything():
    _, full = examples("task.eval_limit=null")
    _, capped = examples("task.eval_limit=100000")
    assert len(capped) == len(full) == 500


@pytest.mark.parametrize("key", ["train_limit", "eval_limit"])
def test_non_positive_limits_are_rejected(key):
    with pytest.raises(ConfigError, match=f"task.{key}"):
        validate_config(task_cfg("news_summary", f"task.{key}=0"))
