"""Recipe `eval` (method=none): it trains nothing, and its parameter counts say so."""

from __future__ import annotations

from pathlib import Path

from lora_lab.jobs import run_job
from lora_lab.models import load_model_and_tokenizer
from tests.helpers.lab_helpers import tiny_cfg, validated_cfg

QUICK = ("task.eval_limit=2", "eval.before=false")


def test_method_none_reports_no_trainable_parameters_and_the_models_count(tmp_path: Path) -> None:
    model, _ = load_model_and_tokenizer(validated_cfg())
    base_params = sum(p.numel() for p in model.parameters())
    metrics = run_job(tiny_cfg("method=none", *QUICK), tmp_path / "base")
    assert metrics["status"] == "ok"
    assert (metrics["trainable_params"], metrics["total_params"]) == (0, base_params)


def test_method_none_with_an_adapter_reports_no_trainable_parameters(tmp_path: Path) -> None:
    trained = run_job(tiny_cfg("method=lora", "train.max_steps=1", *QUICK), tmp_path / "lora")
    assert trained["trainable_params"] > 0
    metrics = run_job(tiny_cfg("method=none", f"adapter_path={tmp_path / 'lora' / 'adapter'}", *QUICK),
                      tmp_path / "eval")
    assert metrics["status"] == "ok"
    # the adapter's weights count in the total, as they did in the run that trained them
    assert (metrics["trainable_params"], metrics["total_params"]) == (0, trained["total_params"])
