"""Bad local data fails before any model loads, naming the file (and line) and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lab_helpers import compose_cfg

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.validate import validate_config
from lora_lab.jobs import run_job
from lora_lab.tasks import TASKS


def load(task: str, data_dir: Path, split: str, *extra: str):
    cfg = validate_config(compose_cfg(["model=tiny", f"task={task}", f"task.data_dir={data_dir}", *extra]))
    return TASKS.get(task)(cfg.task).load_split(split)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(("task", "file", "rows", "split", "field"), [
    ("imdb", "test.jsonl", [{"text": "great", "label": 1}, {"text": "meh"}], "test", "label"),
    ("news_summary", "test.jsonl", [{"text": "an article"}], "test", "summary"),
    ("news_summary", "test.jsonl", [{"body": "x", "summary": "y"}], "test", "text"),
    ("gsm8k", "test.jsonl", [{"question": "1+1?"}], "test", "answer"),
    ("wikitext2", "wikitext-2-raw-v1.test.jsonl", [{"line": 0}], "test", "text"),
    ("sni", "task001_x.jsonl", [{"task": "task001_x", "id": "a", "input": "i", "output": "o"}] * 2, "test",
     "definition"),
])
def test_missing_field(tmp_path, task, file, rows, split, field):
    path = jsonl(tmp_path / file, rows)
    extra = ["task.sni_task=task001_x"] if task == "sni" else []
    with pytest.raises(DataError, match=rf"{path}:\d+: missing field '{field}'"):
        load(task, tmp_path, split, *extra)


@pytest.mark.parametrize(("task", "file", "split"), [
    ("imdb", "test.jsonl", "test"), ("sst2", "test.tsv", "test"), ("agnews", "test.tsv", "test"),
    ("news_summary", "test.jsonl", "test"), ("wikitext2", "test.txt", "test"),
])
def test_empty_file(tmp_path, task, file, split):
    (tmp_path / file).write_text("sentence\tlabel\n" if task == "sst2" else "\n", encoding="utf-8")
    extra = ["task.hub_config=wikitext-2-v1"] if task == "wikitext2" else []
    with pytest.raises(DataError, match=rf"{tmp_path / file}: no records \(empty file\)"):
        load(task, tmp_path, split, *extra)


@pytest.mark.parametrize("task,file,content,problem", [
    ("sst2", "test.tsv", "sentence\tlabel\na fine film\t1\nawful\t5\n",
     r":3: field 'label' has '5'.*choices: 0, 1, negative, positive"),
    ("agnews", "test.tsv", "Stocks rally\tBusiness\nA new phone\tGadgets\n",
     r":2: field 'label' has 'Gadgets'.*World, Sports, Business, Sci/Tech"),
    ("agnews", "test.tsv", "Stocks rally\tBusiness\nno label here\n", r":2: expected fields \['text', 'label'\]"),
    ("imdb", "test.jsonl", '{"text": "ok", "label": 1}\n{"text": broken\n', r":2: not valid JSON"),
], ids=["wrong_label_in_tsv", "wrong_label_in_agnews", "short_tsv_row", "bad_json_line"])
def test_malformed_row_names_file_and_line(tmp_path, task, file, content, problem):
    path = tmp_path / file
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}{problem}"):
        load(task, tmp_path, "test")


def test_missing_file_and_unknown_split(tmp_path):
    with pytest.raises(DataError, match=rf"{tmp_path / 'test.jsonl'}: file not found"):
        load("imdb", tmp_path, "test")
    with pytest.raises(ConfigError, match=r"choices: train, dev, validation, test"):
        load("sst2", tmp_path, "unlabelled")
    with pytest.raises(ConfigError, match=r"choices: validation, test"):
        load("wikitext2", tmp_path, "train")


def test_a_job_on_bad_data_fails_cleanly(tmp_path, run_dir):
    jsonl(tmp_path / "test.jsonl", [{"text": "great"}])
    cfg = compose_cfg(["model=tiny", "task=imdb", f"task.data_dir={tmp_path}", "method=none", "print_summary=false"])
    with pytest.raises(DataError, match="missing field 'label'"):
        run_job(cfg, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "DataError"
