"""benchmarks/bench_export_llamacpp.py on a tiny adapter saved in a run dir: one JSON row per type, the same prompt
ids on both sides, both accuracies, and llama.cpp answering like lora-lab (slow: needs llama-cpp-python)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers.lab_helpers import REPO
from tests.helpers.method_helpers import build, fit, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_export_llamacpp",
                                                  REPO / "benchmarks" / "bench_export_llamacpp.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_export_llamacpp_on_a_tiny_adapter(tmp_path: Path):
    pytest.importorskip("llama_cpp")
    cfg = method_cfg("lora", "train.max_steps=4", "method.lr=1e-2", "task.eval_limit=8")
    built = build(cfg)
    fit(built)
    (tmp_path / "run" / ".hydra").mkdir(parents=True)
    (tmp_path / "run" / "adapter").mkdir()
    OmegaConf.save(cfg, tmp_path / "run" / ".hydra" / "config.yaml")
    built.method.save(built.model, tmp_path / "run" / "adapter")

    out = tmp_path / "result.json"
    assert load_bench().main([str(tmp_path / "run" / "adapter"), "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["examples"] == 8 and sorted(result["types"]) == ["bf16", "f16", "f32", "q8_0"]
    for name, row in result["types"].items():
        assert row["prompt_token_mismatches"] == 0, name
        assert row["file_mb"] > 0 and row["llama_cpp_tokens_per_s"] > 0 and row["lora_lab_tokens_per_s"] > 0
        assert row["accuracy_lora_lab"] == result["lora_lab"]["accuracy"]
        assert 0 <= row["identical_answers"] <= 8 and len(row["differing_answers"]) >= 8 - row["identical_answers"]
    # a random tiny model has near-tied logits, so even f32 may flip a token; most answers must agree
    assert result["types"]["f32"]["identical_answers"] >= 6
    assert not list(tmp_path.glob("*.gguf"))  # the exported files were scratch
