"""`${data_dir:<sub>}`: $LORA_LAB_DATA/<sub> when the variable is set, else null (the hub id serves)."""

from __future__ import annotations

import pytest

from lora_lab.config.validate import validate_config
from tests.helpers.lab_helpers import compose_cfg

TASKS = ["gsm8k", "sst2", "imdb", "agnews", "news_summary", "wikitext2", "sni"]


@pytest.mark.parametrize("task", TASKS)
def test_unset_means_hub(monkeypatch, task):
    monkeypatch.delenv("LORA_LAB_DATA", raising=False)
    assert validate_config(compose_cfg(["model=tiny", f"task={task}"])).task.data_dir is None


@pytest.mark.parametrize("task", TASKS)
def test_set_points_at_the_task_subfolder(monkeypatch, tmp_path, task):
    monkeypatch.setenv("LORA_LAB_DATA", str(tmp_path))
    assert validate_config(compose_cfg(["model=tiny", f"task={task}"])).task.data_dir == str(tmp_path / task)


def test_explicit_override_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("LORA_LAB_DATA", str(tmp_path))
    cfg = validate_config(compose_cfg(["model=tiny", "task=sst2", "task.data_dir=/elsewhere"]))
    assert cfg.task.data_dir == "/elsewhere"


def test_sni_hub_id_follows_the_task_name(monkeypatch):
    monkeypatch.delenv("LORA_LAB_DATA", raising=False)
    cfg = validate_config(compose_cfg(["model=tiny", "task=sni", "task.sni_task=task190_snli_classification"]))
    assert cfg.task.hub_id == "Lots-of-LoRAs/task190_snli_classification"
