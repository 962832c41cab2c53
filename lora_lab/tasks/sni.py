"""`task=sni`: one Super-NaturalInstructions task (definition + input → output), picked by `task.sni_task`.

These are the tasks the Lots-of-LoRAs adapter bank was trained on, so a fine-tune or a generated adapter can
be scored on the same format. Scored as SNI scores itself: Rouge-L (stemmed) and normalised exact match.

Sources:
- hub `Lots-of-LoRAs/<task>` (splits train/valid/test; `input` is already the full prompt) — code path only;
- `task.data_dir` with one of two local layouts (`LAYOUTS`, tried in order): a folder of per-task files
  `<task>.jsonl` (task, definition, id, input, output), or a folder with `sni_instances.jsonl` (task,
  instance_id, input, output; no definition — the one-line `summary` of `sni_tasks.jsonl` stands in when
  present). Local instances are split into train/test deterministically (`test_fraction`, `split_seed`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.schema import ranged
from lora_lab.tasks.base import Example, Task, TaskSchema
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.rouge import exact_match, rouge_f
from lora_lab.tasks.sources import (
    check_fields,
    data_folder,
    load_split_records,
    parse_json_line,
    read_jsonl,
    text_lines,
)

INSTANCES_FILE = "sni_instances.jsonl"
SUMMARIES_FILE = "sni_tasks.jsonl"
LOCAL_SPLITS = ("train", "test")


@dataclass
class SniSchema(TaskSchema):
    name: str = "sni"
    sni_task: str = "task1087_two_number_sum"
    hub_id: str | None = None  # the yaml sets Lots-of-LoRAs/${task.sni_task}
    test_fraction: float = ranged(0.2, gt=0, lt=1)  # local data: share of a task's instances held out for evaluation
    split_seed: int = 0
    use_definition: bool = True
    max_new_tokens: int = 64
    # SNI answers are one line in all but a handful of tasks (e.g. task029/030 winogrande_full, task176 break);
    # a chat model tends to append explanations after its answer line, so generation stops at the first newline
    stop_at_newline: bool = True


@dataclass
class Instance:
    id: str
    input: str
    output: str | list[str]
    definition: str | None


def _instance(record: dict[str, Any], where: str, definition: str | None) -> Instance:
    output = record["output"]
    if isinstance(output, list):
        output = [str(o) for o in output]
        if not output:
            raise DataError(f"{where}: field 'output' is an empty list")
    elif not isinstance(output, str):
        raise DataError(f"{where}: field 'output' must be a string or a list of strings, got {type(output).__name__}")
    return Instance(str(record.get("id", record.get("instance_id", where))), str(record["input"]), output, definition)


def read_task_file(folder: Path, task: str) -> list[Instance] | None:
    """Layout 1: `<task>.jsonl`, each row with its task's definition."""
    path = folder / f"{task}.jsonl"
    if not path.is_file():
        return None
    return read_jsonl(path, ("definition", "id", "input", "output"),
                      parse=lambda r, where: _instance(r, where, str(r["definition"]) or None))


def _summaries(folder: Path) -> dict[str, str]:
    path = folder / SUMMARIES_FILE
    if not path.is_file():
        return {}
    return {r["task"]: str(r["summary"]) for r in read_jsonl(path, ("task",)) if r.get("summary")}


def read_instances_file(folder: Path, task: str) -> list[Instance] | None:
    """Layout 2: one `sni_instances.jsonl` for many tasks (lines of other tasks are skipped unparsed)."""
    path = folder / INSTANCES_FILE
    if not path.is_file():
        return None
    definition = _summaries(folder).get(task)
    needle = json.dumps(task)
    instances = []
    for line_no, line in text_lines(path):
        if needle not in line:
            continue
        record = parse_json_line(line, f"{path}:{line_no}")
        if not isinstance(record, dict) or record.get("task") != task:
            continue
        check_fields(record, ("instance_id", "input", "output"), f"{path}:{line_no}")
        instances.append(_instance(record, f"{path}:{line_no}", definition))
    return instances


LAYOUTS: dict[str, Callable[[Path, str], list[Instance] | None]] = {
    "<task>.jsonl": read_task_file,
    INSTANCES_FILE: read_instances_file,
}


def known_tasks(folder: Path) -> list[str]:
    names = sorted(p.stem for p in folder.glob("task*.jsonl"))
    if (folder / SUMMARIES_FILE).is_file():
        names += sorted(r["task"] for r in read_jsonl(folder / SUMMARIES_FILE, ("task",)))
    return sorted(set(names))


def split_instances(instances: list[Instance], task: str, test_fraction: float, seed: int) -> dict[str, list[Instance]]:
    """Same task, fraction and seed → same split, whatever the file order (instances are sorted by id first)."""
    ordered = sorted(instances, key=lambda i: i.id)
    random.Random(f"{task}/{seed}").shuffle(ordered)
    n_test = min(max(1, round(len(ordered) * test_fraction)), len(ordered) - 1)
    return {"test": ordered[:n_test], "train": ordered[n_test:]}


def sni_prompt(definition: str | None, text: str) -> str:
    """SNI's zero-shot layout (definition, then the instance), as in the bank's training prompts."""
    head = f"Definition: {definition}\n\n" if definition else ""
    return f"{head}Now complete the following example -\nInput: {text}\nOutput:"


@TASKS.option
class SniTask(Task):
    schema = SniSchema
    primary_metric = "rougeL"

    @property
    def stop_strings(self) -> list[str]:  # type: ignore[override]
        return ["\n"] if self.cfg.stop_at_newline else []

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        if not cfg.task.sni_task:
            raise ConfigError("task.sni_task", cfg.task.sni_task, "name an SNI task, e.g. task1087_two_number_sum")

    def _local_instances(self) -> list[Instance]:
        folder = data_folder(self.cfg)
        if not folder.is_dir():
            raise DataError(f"{folder}: data_dir is not a folder")
        for reader in LAYOUTS.values():
            instances = reader(folder, self.cfg.sni_task)
            if instances:
                return instances
        raise ConfigError("task.sni_task", self.cfg.sni_task,
                          f"no instances in {folder} (looked for {' and '.join(LAYOUTS)})",
                          choices=known_tasks(folder)[:40] or None)

    def _example(self, instance: Instance) -> Example:
        definition = instance.definition if self.cfg.use_definition else None
        first = instance.output[0] if isinstance(instance.output, list) else instance.output
        return Example(prompt=sni_prompt(definition, instance.input), target=first, reference=instance.output,
                       system=self.cfg.system_prompt, meta={"id": instance.id})

    def _hub_example(self, r: dict[str, Any], where: str) -> Example:
        """A hub row's `input` is already the full prompt."""
        return Example(prompt=r["input"].strip(), target=r["output"] if isinstance(r["output"], str) else r["output"][0],
                       reference=r["output"], system=self.cfg.system_prompt)

    def load_split(self, split: str) -> list[Example]:
        return load_split_records(self.cfg, split, ("input", "output"), self._hub_example,
                                  local=lambda: self._local_split(split))

    def _local_split(self, split: str) -> list[Example]:
        if split not in LOCAL_SPLITS:
            raise ConfigError("task.train_split/eval_split", split, "local SNI data is split in two", choices=LOCAL_SPLITS)
        splits = split_instances(self._local_instances(), self.cfg.sni_task, self.cfg.test_fraction, self.cfg.split_seed)
        return [self._example(i) for i in splits[split]]

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        return {"rougeL": rouge_f(prediction, example.reference, ("rougeL",))["rougeL"],
                "exact_match": exact_match(prediction, example.reference)}
