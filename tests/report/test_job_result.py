"""The one reader of job results: a usable metrics.json, or one line saying why not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lora_lab.report.job_result import read_attempt, read_result

GOOD = json.dumps({"status": "ok", "score": 0.5, "method": "lora"})


@pytest.mark.parametrize(("content", "problem"), [
    (GOOD[:-9].encode(), "not valid JSON, truncated?"),
    (b"", "empty"),
    (b"status: ok", "not valid JSON"),
    (b"[1, 2]", "not a JSON object (a list)"),
    (json.dumps({"score": 0.5}).encode(), "no status"),
    (json.dumps({"status": 1}).encode(), "status is not a word (1)"),
    (b'{"status": "ok", "score": NaN}', "score is not a finite number (nan)"),
    (b'{"status": "ok", "score": Infinity}', "score is not a finite number (inf)"),
    (json.dumps({"status": "ok", "score": "0.5"}).encode(), "score is not a finite number ('0.5')"),
    (json.dumps({"status": "ok", "score": True}).encode(), "score is not a finite number (True)"),
    (b'{"status": "ok"}\xff', "not UTF-8"),
], ids=["truncated", "empty", "not_json", "list", "no_status", "status_number", "nan", "inf", "score_text",
        "score_bool", "not_utf8"])
def test_a_broken_metrics_file_is_a_reason_never_a_record(tmp_path: Path, content: bytes, problem: str) -> None:
    (tmp_path / "metrics.json").write_bytes(content)
    result = read_result(tmp_path)
    assert result.metrics is None and result.unreadable
    assert result.problem.startswith(problem) and "\n" not in result.problem


def test_usable_records_and_an_absent_one(tmp_path: Path) -> None:
    assert read_result(tmp_path).problem == "no metrics.json" and not read_result(tmp_path).unreadable
    (tmp_path / "metrics.json").write_text(GOOD)
    assert read_result(tmp_path).metrics == json.loads(GOOD)
    # a failed job records no number: a null score is not a broken record there
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "failed", "score": None, "error": "boom"}))
    assert read_result(tmp_path).metrics["status"] == "failed"
    # nor for an ok job whose result stage was not measured (eval.after=false): null is "not measured"
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok", "score": None,
                                                       "score_note": "not measured (eval.after=false)"}))
    assert read_result(tmp_path).metrics["score"] is None
    (tmp_path / "metrics.json").unlink()
    (tmp_path / "metrics.json").mkdir()
    assert read_result(tmp_path).unreadable and read_result(tmp_path).problem.startswith("cannot be read")


def test_an_attempt_record_is_read_only_for_its_launch(tmp_path: Path) -> None:
    (tmp_path / ".attempts").mkdir()
    (tmp_path / ".attempts" / "L1.json").write_text(json.dumps({"launch": "L1", "outcome": "refused"}))
    (tmp_path / ".attempts" / "L2.json").write_text('{"launch": "L2", "outc')
    assert read_attempt(tmp_path, "L1")["outcome"] == "refused"
    assert read_attempt(tmp_path, "L2") is None and read_attempt(tmp_path, "L3") is None
