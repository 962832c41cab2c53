"""Bad local data fails before any model loads, naming the file (and line) and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.validate import validate_config
from lora_lab.jobs import run_job
from lora_lab.tasks import TASKS
from tests.helpers.lab_helpers import compose_cfg


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
    # a local copy without a train file trains on validation (docs/tasks.md): the missing file is the one named
    with pytest.raises(DataError, match=r"wikitext-2-raw-v1\.validation\.jsonl: file not found"):
        load("wikitext2", tmp_path, "train")
    with pytest.raises(ConfigError, match=r"choices: .*validation.*test"):
        load("wikitext2", tmp_path, "dev")


def test_a_job_on_bad_data_fails_cleanly(tmp_path, run_dir):
    jsonl(tmp_path / "test.jsonl", [{"text": "great"}])
    cfg = compose_cfg(["model=tiny", "task=imdb", f"task.data_dir={tmp_path}", "method=none", "print_summary=false"])
    with pytest.raises(DataError, match="missing field 'label'"):
        run_job(cfg, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error_type"] == "DataError"


# One valid line, then a line with a byte that is not UTF-8 (Latin-1 "é"): every reader names file and line 2.
GOOD_LINE = {
    "imdb": '{"text": "great", "label": 1}', "news_summary": '{"text": "an article", "summary": "short"}',
    "gsm8k": '{"question": "1+1?", "answer": "1+1=2\\n#### 2"}', "wikitext2": '{"text": " a line"}',
    "sni": '{"task": "task001_x", "definition": "d", "id": "a", "input": "i", "output": "o"}',
    "sst2": "a fine film\t1", "agnews": "Stocks rally\tBusiness",
}


@pytest.mark.parametrize(("task", "file", "header", "extra"), [
    ("imdb", "test.jsonl", "", []), ("news_summary", "test.jsonl", "", []), ("gsm8k", "test.jsonl", "", []),
    ("wikitext2", "wikitext-2-raw-v1.test.jsonl", "", []), ("sni", "task001_x.jsonl", "", ["task.sni_task=task001_x"]),
    ("sst2", "test.tsv", "sentence\tlabel\n", []), ("agnews", "test.tsv", "", []),
    ("wikitext2", "test.txt", "", ["task.hub_config=wikitext-2-v1"]),
])
def test_invalid_utf8_names_file_and_line(tmp_path, task, file, header, extra):
    path = tmp_path / file
    line = GOOD_LINE.get(task if file != "test.txt" else "", " = Heading =")
    path.write_bytes(f"{header}{line}\n".encode() + line.replace("a", "caf\xe9", 1).encode("latin-1") + b"\n")
    lineno = 3 if header else 2
    with pytest.raises(DataError, match=rf"^{path}:{lineno}: invalid UTF-8 \(byte 0xe9 at column \d+\)"):
        load(task, tmp_path, "test", *extra)


def test_invalid_utf8_in_the_sni_instances_file(tmp_path):
    path = tmp_path / "sni_instances.jsonl"
    row = '{"task": "task001_x", "instance_id": "a", "input": "i", "output": "caf\xe9"}\n'
    path.write_bytes(row.replace("\xe9", "e").encode() + row.encode("latin-1"))
    with pytest.raises(DataError, match=rf"^{path}:2: invalid UTF-8"):
        load("sni", tmp_path, "test", "task.sni_task=task001_x")


@pytest.mark.parametrize("answer", ["She has 5 apples.", "The answer is 5 ####", "#### five"],
                         ids=["no_marker", "marker_without_number", "word_after_marker"])
def test_gsm8k_row_without_final_answer_is_refused_at_its_line(tmp_path, answer):
    path = jsonl(tmp_path / "test.jsonl", [{"question": "1+1?", "answer": "2\n#### 2"},
                                           {"question": "2+3?", "answer": answer}])
    with pytest.raises(DataError, match=rf"^{path}:2: field 'answer' has no final '#### <number>' line"):
        load("gsm8k", tmp_path, "test")


@pytest.mark.parametrize(("content", "problem"), [
    ('{"question": "1+1?", "answer": "#### 2"}\n[1, 2]\n', r":2: expected a JSON object, got list"),
    ('{"question": "1+1?", "answer": "#### 2"}\n{"question": "x", "answer": null}\n', r":2: missing field 'answer'"),
    ('{"question": "1+1?", "answer": "#### 2"}\n{"question": "x", \n', r":2: not valid JSON"),
    ('{"question": "1+1?", "answer": "#### 2"}\n' + "[" * 100000 + "\n", r":2: not valid JSON"),
], ids=["not_an_object", "null_field", "truncated_line", "nested_too_deep"])
def test_malformed_json_lines(tmp_path, content, problem):
    path = tmp_path / "test.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}{problem}"):
        load("gsm8k", tmp_path, "test")


def test_a_folder_where_a_file_should_be(tmp_path):
    (tmp_path / "test.jsonl").mkdir()
    with pytest.raises(DataError, match=rf"^{tmp_path / 'test.jsonl'}: not a regular file"):
        load("imdb", tmp_path, "test")


def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path):
    (tmp_path / "test.tsv").write_text("\ufeffStocks rally\tBusiness\n", encoding="utf-8")
    (example,) = load("agnews", tmp_path, "test")
    assert "\ufeff" not in example.prompt and "Stocks rally" in example.prompt
