"""Task keys without `++`: `task.<key>=v` composes for every task; a key of another task is set aside in a multirun
(noted in metrics.json as `ignored_keys`) and a key of no task is one line — per job, and once before a multirun
starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import check_task_keys_exist, other_task_keys, task_keys, validate_config
from lora_lab.tasks import TASKS
from tests.helpers.lab_helpers import compose_cfg, shared_data
from tests.helpers.sweep_helpers import run_cli


@pytest.mark.parametrize(("task", "override", "kept"), [
    ("sst2", "task.max_input_chars=7", {"max_input_chars": 7}),  # its own key, no `++`
    ("news_summary", "task.max_input_chars=7", {"max_input_chars": 7}),
    ("arith", "task.max_input_chars=7", {}),  # a key of sst2/imdb/agnews/news_summary: set aside
    ("wikitext2", "task.label_words=[a,b]", {}),
    ("arith", "task.max_operand=9", {"max_operand": 9}),
])
def test_a_task_key_composes_for_every_task(task, override, kept) -> None:
    raw = compose_cfg([f"task={task}", override])
    key = override.split("=")[0]
    cfg = validate_config(raw)
    name = key.removeprefix("task.")
    if kept:
        assert cfg.task[name] == kept[name] and other_task_keys(raw) == []
    else:
        assert name not in cfg.task and name not in task_keys(task) and other_task_keys(raw) == [key]


@pytest.mark.parametrize("task", TASKS.names())
def test_a_key_of_no_task_is_one_config_error(task) -> None:
    raw = compose_cfg([f"task={task}", "task.max_input_chr=5"])  # composes: the task node is open
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert str(err.value).startswith("task.max_input_chr=5: unknown key (choices: name, ")
    assert "max_operand" in str(err.value) if task == "arith" else "max_operand" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^task.max_input_chr=5: unknown key of every task \(choices: "):
        check_task_keys_exist(raw)


def test_a_multirun_with_a_key_of_no_task_stops_before_any_job(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "model=tiny", "task=arith,sst2", "task.max_input_chr=500", f"hydra.sweep.dir={sweep}"],
                     tmp_path, timeout=120)
    assert result.returncode == 2 and not sweep.exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("lora-lab:")]
    assert errors == [line for line in result.stderr.splitlines() if line.strip()]  # nothing but the one line
    assert len(errors) == 1 and errors[0].startswith(
        "lora-lab: config error: task.max_input_chr=500: unknown key of every task (choices: ")


def test_a_multirun_over_tasks_takes_a_key_only_some_tasks_have(tmp_path: Path) -> None:
    from lora_lab import cli

    data = shared_data("sst2").parent
    sweep = tmp_path / "sweep"
    argv = ["lora-lab", "-m", "experiment=smoke", "task=arith,sst2", "task.max_input_chars=12", "task.train_limit=16",
            "task.eval_limit=4", "train.max_steps=1", "eval.before=false", "print_summary=false",
            "hardware.num_threads=1", f"hydra.sweep.dir={sweep}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        mp.setenv("LORA_LAB_DATA", str(data))
        mp.setenv("LORA_LAB_OUTPUTS", str(tmp_path))
        mp.setenv("LORA_LAB_RUN_TOKEN", "keys00")
        cli.hydra_app()
    arith, sst2 = (json.loads((sweep / n / "metrics.json").read_text()) for n in ("0", "1"))
    assert arith["status"] == sst2["status"] == "ok"
    assert arith["ignored_keys"] == ["task.max_input_chars"]
    assert sst2["ignored_keys"] == ["task.num_train", "task.num_test"]  # experiment=smoke sets arith's sizes
    prompts = [json.loads(line)["input"] for line in (sweep / "1" / "predictions_after.jsonl").read_text().splitlines()]
    assert prompts and all(len(p.rsplit("\n\n", 1)[-1]) <= 12 for p in prompts)  # sst2 cut its texts
