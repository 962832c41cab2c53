"""Every reported number says where it comes from: a job's `score` is the primary metric of the stage that is its
recipe's result (`score_stage`), never another stage's number; an unmeasured result is `null` and said so."""

from __future__ import annotations

import json
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from lora_lab.jobs import run_job
from lora_lab.search.sweeper import job_failure
from lora_lab.summary import summary_table
from tests.helpers.lab_helpers import tiny_cfg

QUICK = ("train.max_steps=1", "task.num_train=16", "task.eval_limit=2", "eval.batch_size=2")


def rows(table: str) -> dict[str, str]:
    return {line.split(None, 1)[0]: line.split(None, 1)[1].strip() for line in table.splitlines()}


def test_a_finetune_without_its_after_evaluation_reports_no_score_not_the_before_one(tmp_path: Path) -> None:
    metrics = run_job(tiny_cfg(*QUICK, "eval.after=false"), tmp_path / "run")
    assert metrics["status"] == "ok" and isinstance(metrics["before_accuracy"], float)
    assert metrics["score"] is None and metrics["score_stage"] == "after" and metrics["primary_metric"] == "accuracy"
    assert metrics["score_note"] == "not measured (eval.after=false)"
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "score" in written and written["score"] is None
    table = rows(summary_table(metrics))
    assert table["score"] == "not measured (eval.after=false)"
    assert table["accuracy"] == f"{metrics['before_accuracy']:.4g} → —"


def test_each_recipe_scores_its_own_result_stage(tmp_path: Path) -> None:
    trained = run_job(tiny_cfg(*QUICK), tmp_path / "lora")
    assert (trained["score_stage"], trained["score"]) == ("after", trained["after_accuracy"])
    assert "score_note" not in trained
    assert rows(summary_table(trained))["score"] == f"{trained['after_accuracy']:.4g} (after: accuracy)"
    evaluated = run_job(tiny_cfg("method=none", "task.eval_limit=2", "eval.batch_size=2"), tmp_path / "none")
    assert (evaluated["score_stage"], evaluated["score"]) == ("eval", evaluated["eval_accuracy"])
    # meta: tests/jobs/test_ignored_keys.py::test_a_meta_multirun_records_the_training_keys_it_ignores


def test_the_summary_shows_a_missing_number_as_missing() -> None:
    table = rows(summary_table({"status": "ok", "method": "lora", "before_accuracy": 0.25, "after_accuracy": None,
                                "first_train_loss": None, "score": None, "score_stage": "after",
                                "primary_metric": "accuracy"}))
    assert table["score"] == "not measured" and table["accuracy"] == "0.25 → —" and table["first_train_loss"] == "—"
    failed = rows(summary_table({"status": "failed", "method": "lora"}))
    assert "score" not in failed


def test_a_search_counts_a_trial_without_a_score_as_failed_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "ok", "score": None, "score_stage": "after",
                                                       "score_note": "not measured (eval.after=false)"}))
    ret = JobReturn(status=JobStatus.COMPLETED, _return_value=None,
                    hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path)}}}))
    assert job_failure(ret) == "ok but no finite score (score=None: not measured (eval.after=false))"
