"""Evaluation progress (`evaluation/progress.py`): tqdm on a terminal only; inside a job's evaluation, lines in the
run's train.log at each tenth of the batches, then the closing line (`jobs.steps.closing_line`)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from lora_lab.evaluation.progress import PARTS, eval_log, progress
from lora_lab.jobs.steps import closing_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _batches_logged(path: Path) -> list[int]:
    text = path.read_text() if path.exists() else ""
    return [int(m.group(1)) for m in re.finditer(r"^eval after: batch (\d+)/\d+ elapsed \S+ eta \S+$", text, re.M)]


def test_outside_an_evaluation_log_it_is_plain_iteration(tmp_path: Path, capsys) -> None:
    assert list(progress(range(5), desc="score")) == [0, 1, 2, 3, 4]
    assert capsys.readouterr() == ("", "")  # no terminal: no bar, and no line anywhere
    assert not list(tmp_path.iterdir())


def test_lines_at_each_tenth_of_the_batches_and_no_bar_without_a_terminal(tmp_path: Path, capsys) -> None:
    with eval_log(tmp_path, "after", echo=False):
        assert list(progress(range(25), desc="eval (after)")) == list(range(25))
    assert _batches_logged(tmp_path / "train.log") == [3, 5, 8, 10, 13, 15, 18, 20, 23]  # the 25th: closing line
    assert len(_batches_logged(tmp_path / "train.log")) < PARTS
    assert capsys.readouterr() == ("", "")


def test_a_line_is_written_once_its_batch_is_done(tmp_path: Path) -> None:
    with eval_log(tmp_path, "after", echo=False):
        for batch in progress(range(3), desc="eval"):
            assert _batches_logged(tmp_path / "train.log") == list(range(1, batch + 1))


def test_on_a_terminal_the_bar_shows_and_stdout_gets_no_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stdout, stderr = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", stderr)
    with eval_log(tmp_path, "before"):
        list(progress(range(4), desc="eval (before)"))
    assert "eval (before)" in stderr.getvalue()  # tqdm's bar
    assert stdout.getvalue() == ""
    assert (tmp_path / "train.log").read_text().count("eval before: batch") == 3  # the run log has them anyway


def test_a_redirected_stdout_gets_the_lines(tmp_path: Path, capsys) -> None:
    with eval_log(tmp_path, "eval") as log:
        log.write("0/2 examples")
    assert capsys.readouterr().out == "eval: 0/2 examples\n" == (tmp_path / "train.log").read_text()


def test_closing_line() -> None:
    assert closing_line({"accuracy": 0.425, "eval_seconds": 13.0}, "accuracy", 40, "examples", 13.0) == \
        "40/40 examples accuracy 0.4250 examples/s 3.1 elapsed 0:00:13"
    assert closing_line({"perplexity": 23.5}, "perplexity", 2, "documents", 0.0) == \
        "2/2 documents perplexity 23.5000 documents/s 0.0 elapsed 0:00:00"
    assert closing_line({}, "rougeL", 1, "examples", 2.0) == "1/1 examples examples/s 0.5 elapsed 0:00:02"
