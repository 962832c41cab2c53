"""SNI: both local layouts, the deterministic split, the prompt format and the scores."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from lora_lab.config.errors import ConfigError
from lora_lab.tasks.sni import Instance, SniSchema, SniTask, sni_prompt, split_instances
from tests.helpers.lab_helpers import shared_data


def sni(data_dir, **overrides) -> SniTask:
    return SniTask(OmegaConf.merge(OmegaConf.structured(SniSchema), {"data_dir": str(data_dir), **overrides}))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_per_task_layout_from_shared_data():
    task = sni(shared_data("sni"))
    train, test = task.load_split("train"), task.load_split("test")
    assert (len(train), len(test)) == (33, 8)
    assert not {ex.meta["id"] for ex in train} & {ex.meta["id"] for ex in test}
    assert test[0].prompt.startswith("Definition: You are given a list of integers and an integer target")
    assert "\n\nNow complete the following example -\nInput: [" in test[0].prompt
    assert test[0].prompt.endswith("\nOutput:")


def test_instances_layout_uses_the_summary_as_definition():
    task = sni(shared_data("sni665"), sni_task="task020_mctaco_span_based_question")
    examples = task.load_split("train") + task.load_split("test")
    assert len(examples) == 100
    assert examples[0].prompt.startswith("Definition: Checking whether the given sentence contains answer")


def test_both_layouts_in_one_folder_prefer_the_task_file(tmp_path):
    write_jsonl(tmp_path / "task001_x.jsonl", [
        {"task": "task001_x", "definition": "Say hi.", "id": f"a{i}", "input": f"in {i}", "output": "hi"} for i in range(5)
    ])
    write_jsonl(tmp_path / "sni_instances.jsonl", [
        {"task": "task002_y", "instance_id": f"b{i}", "input": f"x {i}", "output": ["yes", "y"]} for i in range(5)
    ])
    assert sni(tmp_path, sni_task="task001_x").load_split("test")[0].prompt.startswith("Definition: Say hi.")
    y = sni(tmp_path, sni_task="task002_y").load_split("test")[0]
    assert y.prompt.startswith("Now complete the following example -") and y.reference == ["yes", "y"]
    assert y.target == "yes"


def test_unknown_task_lists_the_choices(tmp_path):
    write_jsonl(tmp_path / "task001_x.jsonl", [
        {"task": "task001_x", "definition": "d", "id": "a", "input": "i", "output": "o"},
        {"task": "task001_x", "definition": "d", "id": "b", "input": "i", "output": "o"},
    ])
    with pytest.raises(ConfigError, match=r"task.sni_task='task999_nope'.*choices: task001_x"):
        sni(tmp_path, sni_task="task999_nope").load_split("test")


def test_split_is_deterministic_and_ignores_file_order():
    instances = [Instance(f"id{i:03d}", f"in{i}", "out", None) for i in range(50)]
    first = split_instances(instances, "t", 0.2, seed=0)
    again = split_instances(list(reversed(instances)), "t", 0.2, seed=0)
    other = split_instances(instances, "t", 0.2, seed=1)
    assert [i.id for i in first["test"]] == [i.id for i in again["test"]]
    assert [i.id for i in first["test"]] != [i.id for i in other["test"]]
    assert len(first["test"]) == 10 and len(first["train"]) == 40
    assert not {i.id for i in first["test"]} & {i.id for i in first["train"]}
    assert len(split_instances(instances[:2], "t", 0.01, seed=0)["test"]) == 1  # never an empty split


def test_scores():
    task = sni(shared_data("sni"))
    ex = task.load_split("test")[0]
    perfect = task.score(ex.target, ex)
    assert perfect == {"rougeL": 1.0, "exact_match": 1.0}
    assert task.score("something else entirely", ex)["exact_match"] == 0.0


def test_prompt_without_definition():
    assert sni_prompt(None, "x") == "Now complete the following example -\nInput: x\nOutput:"


def test_generation_stops_at_the_first_newline_unless_disabled():
    assert sni(shared_data("sni")).stop_strings == ["\n"]
    assert sni(shared_data("sni"), stop_at_newline=False).stop_strings == []
