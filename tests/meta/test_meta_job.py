"""End to end: train a small bank with the project's own LoRA runs, then generate an adapter leave-one-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from peft import PeftModel

from lora_lab.meta.from_runs import build_bank_from_runs

pytestmark = pytest.mark.slow  # trains a bank through the CLI: minutes on 2 cores


def lora_lab(args: list[str], outputs: Path) -> None:
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(outputs), "HF_HUB_OFFLINE": "1"}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "lora_lab", *args], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bank")
    common = ["model=tiny", "method=lora", "train.max_steps=3", "train.batch_size=4", "task.num_train=40",
              "task.num_test=4", "eval.before=false", "eval.after=false", "print_summary=false"]
    lora_lab(["-m", *common, "task.max_operand=5,9,60,90"], root / "runs")
    sweep = next((root / "runs" / "multiruns").iterdir())
    build_bank_from_runs(sweep, root / "bank")
    return root / "bank"


def test_bank_index_lists_every_finished_job(bank: Path) -> None:
    index = json.loads((bank / "bank.json").read_text())
    assert index["base_model"] == "tiny" and len(index["members"]) == 4
    assert all((bank / m["adapter"] / "adapter_model.safetensors").is_file() for m in index["members"])


@pytest.mark.parametrize("version,combine", [("base", "factors"), ("normalized", "delta"), ("mlp", "svd")])
def test_meta_job_leaves_the_target_out_and_writes_a_loadable_adapter(bank: Path, tmp_path: Path,
                                                                       version: str, combine: str) -> None:
    lora_lab(["model=tiny", "method=meta", f"method.bank_dir={bank}", "method.target=arith_0",
              f"method.version={version}", f"method.combine={combine}", "metric=js", "task.eval_limit=4",
              "eval.before=false", "print_summary=false", "method.mlp.steps=20"], tmp_path)
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok", metrics.get("error")
    assert metrics["target"] == "arith_0" and metrics["bank_size"] == 4
    chosen = [metrics[f"top{i}_member"] for i in (1, 2, 3) if metrics[f"top{i}_coefficient"] > 0]
    assert "arith_0" not in chosen  # leave-one-out
    assert abs(sum(metrics[f"top{i}_coefficient"] for i in (1, 2, 3, 4)) - 1) < 1e-6
    # the nearest dataset (operands up to 9 vs 5) gets the largest weight under every version
    assert metrics["top1_member"] == "arith_1"
    assert all(k in metrics for k in ("time_distances_s", "time_predict_s", "after_accuracy"))

    from omegaconf import OmegaConf

    from lora_lab.config.compose import CONF_DIR
    from lora_lab.models.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    options = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / "tiny.yaml").tiny)
    base = build_tiny_model(tok, options, kind="causal_lm", num_labels=2, seed=0)
    tuned = PeftModel.from_pretrained(base, str(run / "adapter"))
    ids = tok(["Ava has 3 apples."], return_tensors="pt")
    with torch.no_grad():
        out = tuned(**ids).logits
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("version,combine", [("soup", "delta"), ("lorahub", "factors"), ("best_single", "delta")])
def test_the_fields_baselines_write_a_loadable_adapter(bank: Path, tmp_path: Path, version: str, combine: str) -> None:
    """AdapterSoup (k chosen on the bank), LoraHub's search and its best-single control as `method.version`."""
    lora_lab(["model=tiny", "method=meta", f"method.bank_dir={bank}", "method.target=arith_0",
              f"method.version={version}", f"method.combine={combine}", "metric=js", "task.eval_limit=2",
              "eval.before=false", "print_summary=false", "method.fewshot_count=2", "method.fewshot_budget=8"],
             tmp_path)
    run = next((tmp_path / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "ok", metrics.get("error")
    chosen = [metrics[f"top{i}_member"] for i in (1, 2, 3) if metrics[f"top{i}_coefficient"] != 0]
    assert "arith_0" not in chosen  # leave-one-out, for every version
    if version == "soup":
        assert metrics["soup_k"] in (1, 2) and len(chosen) == metrics["soup_k"]  # k of the 3 others, k < 3
        assert all(metrics[f"top{i}_coefficient"] == pytest.approx(1 / metrics["soup_k"]) for i in range(1, 1 +
                   metrics["soup_k"]))
    else:
        assert metrics["fewshot_examples"] == 2 and metrics["fewshot_best_loss"] <= metrics["fewshot_start_loss"]
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(run / "adapter")).r >= 1


def test_embedding_representation_generates_end_to_end(bank: Path, tmp_path: Path) -> None:
    """Mean MiniLM sentence embeddings with a vector distance (metric=cosine) instead of token histograms."""
    lora_lab(["model=tiny", "method=meta", f"method.bank_dir={bank}", "method.target=arith_0",
              "method.representation=embedding", "metric=cosine", "task.eval_limit=4", "eval.before=false",
              "print_summary=false"], tmp_path)
    metrics = json.loads((next((tmp_path / "runs").iterdir()) / "metrics.json").read_text())
    assert metrics["status"] == "ok", metrics.get("error")
    chosen = [metrics[f"top{i}_member"] for i in (1, 2, 3) if metrics[f"top{i}_coefficient"] > 0]
    assert chosen and "arith_0" not in chosen
    assert 0 <= metrics["top1_distance"] <= 2  # a cosine distance


def test_meta_without_bank_fails_clearly(tmp_path: Path) -> None:
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "lora_lab", "model=tiny", "method=meta"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "method.bank_dir" in result.stderr
    assert "experiment=meta_minibank" in result.stderr  # says how to get a bank


def test_study_scores_every_setting_and_baseline_per_target_and_protocol(bank: Path, tmp_path: Path) -> None:
    from lora_lab.meta.study import markdown_table, run_study

    out = tmp_path / "study.json"
    result = run_study(bank, ["arith_0", "arith_3"], ["model=tiny", "eval.max_new_tokens=4", "method.mlp.steps=20"],
                       eval_limit=4, out=out, embedding=True)
    settings = {r["setting"] for r in result["rows"]}
    assert {f"{v}/{m}" for v in ("base", "normalized", "mlp") for m in ("wd", "kl", "js", "mmd")} <= settings
    assert {"base", "oracle", "uniform", "nearest/js", "normalized/embedding", "nearest/embedding"} <= settings
    assert len(result["rows"]) == 2 * 2 * len(settings)  # targets x protocols x settings
    for row in result["rows"]:
        if row["setting"] not in ("base", "oracle"):
            assert row["top_member"] != row["target"]  # every setting leaves the target out
    nearest = {r["target"]: r["top_member"] for r in result["rows"] if r["setting"] == "nearest/js"}
    assert nearest == {"arith_0": "arith_1", "arith_3": "arith_2"}  # operands 5~9 and 90~60
    assert json.loads(out.read_text())["summary"] == result["summary"]
    assert "| oracle |" in markdown_table(result, ("accuracy",))


def test_study_scores_soup_lorahub_best_single_and_arrow(bank: Path, tmp_path: Path) -> None:
    from lora_lab.meta.study import run_study

    chosen = ["soup/js", "fewshot/search", "fewshot/lorahub", "fewshot/best_single", "arrow"]
    result = run_study(bank, ["arith_0"], ["model=tiny", "eval.max_new_tokens=4", "method.fewshot_budget=8"],
                       eval_limit=2, only=chosen, fewshot=2, arrow=True)
    rows = {(r["protocol"], r["setting"]): r for r in result["rows"]}
    assert {setting for _, setting in rows} == {*chosen, "base", "oracle"}
    assert len(result["rows"]) == 2 * (len(chosen) + 2)  # protocols x (settings + base + oracle)
    assert rows["loo", "arrow"]["top_member"] is None  # routed per token: no single member
    assert all(rows["loo", s]["top_member"] != "arith_0" for s in chosen[:-1])
    assert "accuracy" in rows["lso", "fewshot/lorahub"]


def test_bank_study_script_scores_every_baseline_in_its_form(bank: Path, tmp_path: Path) -> None:
    """benchmarks/meta_study_bank64.py end to end on the tiny bank: soup, LoraHub's searches, best single and Arrow
    beside the published settings, in the same per-target and summary shape."""
    out = tmp_path / "study.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "benchmarks/meta_study_bank64.py", str(bank), "--targets", "arith_0",
                             "--sizes", "4", "--fewshot", "2", "--eval-limit", "2", "--out", str(out), "--",
                             "model=tiny", "eval.max_new_tokens=4", "method.fewshot_budget=8", "method.mlp.steps=5"],
                            cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    study = json.loads(out.read_text())
    rows = study["per_target"]["arith_0"]
    for name in ("soup/js", "arrow", "fewshot/search", "fewshot/search_factors", "fewshot/lorahub",
                 "fewshot/lorahub_prior", "fewshot/best_single", "mlp/wd", "uniform"):
        assert "accuracy" in rows[f"4|loo|{name}"], name  # the task's score (SNI: rougeL and exact_match)
    assert "4|lso|arrow" in rows  # a bank of 4 is too small for nested sizes (mlp fits on >= 3 members)
    assert set(study) >= {"settings", "scale", "comparison", "per_target", "fewshot_losses", "soup_k"}
    assert study["settings"]["soup/js"]["loo"]["accuracy"] == pytest.approx(rows["4|loo|soup/js"]["accuracy"])
    assert 1 <= study["soup_k"]["arith_0"]["4|loo"]["js"] <= 2  # chosen among the 3 members it may use
    assert {r["setting"] for r in study["fewshot_losses"]} == {"fewshot/search", "fewshot/search_factors",
                                                               "fewshot/lorahub", "fewshot/lorahub_prior",
                                                               "fewshot/best_single"}


def test_meta_grid_experiment_runs_all_12_settings_in_one_multirun(bank: Path, tmp_path: Path) -> None:
    lora_lab(["-m", "experiment=meta_grid", "model=tiny", f"method.bank_dir={bank}", "method.target=arith_3",
              "task.eval_limit=2", "eval.before=false", "eval.max_new_tokens=2", "print_summary=false",
              "method.mlp.steps=10"], tmp_path)
    jobs = [json.loads(p.read_text()) for p in (tmp_path / "multiruns").rglob("metrics.json")]
    assert len(jobs) == 12 and all(j["status"] == "ok" for j in jobs), [j.get("error") for j in jobs]
    configs = {(p.parent / ".hydra" / "overrides.yaml").read_text() for p in (tmp_path / "multiruns").rglob("metrics.json")}
    assert len(configs) == 12  # 3 versions x 4 metrics, each once
    assert all(j["target"] == "arith_3" and j["top1_member"] != "arith_3" for j in jobs)


def test_a_bank_member_with_nan_weights_fails_the_meta_job_in_one_line_naming_it(bank: Path, tmp_path: Path) -> None:
    """The nearest member of the target holds NaNs: the job is not ok, no adapter is written, one line names the
    member's file and tensor (before, the NaNs flowed into an adapter of a run labelled ok)."""
    import shutil

    from safetensors.torch import load_file, save_file

    poisoned = tmp_path / "bank"
    shutil.copytree(bank, poisoned)
    weights = poisoned / "adapters" / "arith_1" / "adapter_model.safetensors"
    if not weights.is_file():  # the member folder is named as in bank.json
        weights = next(p for p in poisoned.rglob("adapter_model.safetensors") if "arith_1" in str(p))
    tensors = load_file(str(weights))
    key = sorted(tensors)[0]
    tensors[key][0, 0] = float("nan")
    save_file(tensors, str(weights))
    env = {**os.environ, "LORA_LAB_OUTPUTS": str(tmp_path / "out"), "HF_HUB_OFFLINE": "1"}
    env.pop("LORA_LAB_RUN_TOKEN", None)
    result = subprocess.run([sys.executable, "-m", "lora_lab", "model=tiny", "method=meta",
                             f"method.bank_dir={poisoned}", "method.target=arith_0", "task.eval_limit=2",
                             "eval.before=false", "print_summary=false"], env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("lora-lab:")]
    assert len(lines) == 1 and lines[0].startswith("lora-lab: data error: ") and str(weights) in lines[0]
    assert f"tensor '{key}'" in lines[0] and "NaN or infinite" in lines[0]
    assert "Traceback" not in result.stderr
    run = next((tmp_path / "out" / "runs").iterdir())
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert not (run / "adapter").exists()
