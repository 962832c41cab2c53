"""`${data_dir:<sub>}`: $LORA_LAB_DATA/<sub> when the variable is set, else null (the hub id serves)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from lora_lab.config.compose import CONF_DIR
from lora_lab.config.validate import validate_config
from lora_lab.tasks import TASKS
from tests.helpers.lab_helpers import compose_cfg


def reads_data_dir(task: str) -> bool:
    """Its YAML sets `data_dir` (through `${data_dir:<task>}`); arith generates its data and has none."""
    path = CONF_DIR / "task" / f"{task}.yaml"
    return path.is_file() and "data_dir" in OmegaConf.load(path)


DATA_TASKS = [task for task in TASKS.names() if reads_data_dir(task)]


@pytest.mark.parametrize("task", DATA_TASKS)
def test_unset_means_hub(monkeypatch, task):
    monkeypatch.delenv("LORA_LAB_DATA", raising=False)
    assert validate_config(compose_cfg(["model=tiny", f"task={task}"])).task.data_dir is None


@pytest.mark.parametrize("task", DATA_TASKS)
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
