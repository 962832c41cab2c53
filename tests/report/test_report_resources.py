"""`lora-lab-report --resources`, several metrics in one table, and the loss-curve figure: on a synthetic sweep
(exact table text) and on a real tiny sweep (what the jobs record: model bytes of a 4-bit base, loss history)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lora_lab.commands import report as report_cli
from lora_lab.commands.report import main
from lora_lab.report.collect import with_derived
from tests.helpers.sweep_helpers import TINY_JOB

# -m method=lora,qlora task=arith,sst2: jobs 0-2 ok with resource metrics and loss histories, job 3 failed
JOBS = {
    0: ("lora", "arith", {"trainable_params": 7168, "total_params": 94528, "model_bytes": 406272,
                          "train_seconds": 1.5, "train_tokens_per_s": 35900.4, "peak_rss_mb": 540.25, "score": 0.5},
        [5.4, 5.1, 4.9]),
    1: ("lora", "sst2", {"trainable_params": 7168, "total_params": 94528, "model_bytes": 406272,
                         "train_seconds": 2.0, "train_tokens_per_s": 12000.0, "peak_rss_mb": 560.0, "score": 0.75},
        [0.7, None, 0.5]),  # a skipped non-finite step is null
    2: ("qlora", "arith", {"trainable_params": 7168, "total_params": 94528, "model_bytes": 215040,
                           "train_seconds": 3.25, "train_tokens_per_s": 9000.0, "peak_rss_mb": 600.0, "score": 0.25},
        [5.7, 5.5, 5.2]),
    3: ("qlora", "sst2", {"status": "failed", "error": "boom"}, None),
}


def resource_sweep(root: Path) -> Path:
    sweep = root / "sweep"
    sweep.mkdir()
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["method=lora,qlora", "task=arith,sst2",
                                                                      "model=tiny"]}}}), sweep / "multirun.yaml")
    for num, (method, task, metrics, losses) in JOBS.items():
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"method={method}", f"task={task}", "model=tiny"]),
                       job / ".hydra" / "overrides.yaml")
        (job / "metrics.json").write_text(json.dumps({"status": "ok", **metrics, "method": method, "task": task}))
        if losses is not None:
            (job / "train_losses.json").write_text(json.dumps({"resumed_from_step": 0, "losses": losses}))
    return sweep


def test_resources_is_one_table_with_a_row_per_job(tmp_path: Path, capsys) -> None:
    sweep = resource_sweep(tmp_path)
    assert main([str(sweep), "--resources"]) == 0
    table = (sweep / "resources.md").read_text()
    assert table.splitlines()[:4] == [
        "resources (4 jobs: 3 ok, 1 failed)", "",
        "| method | task | trainable_params | trainable_pct | model_bytes | train_seconds | train_tokens_per_s | "
        "peak_rss_mb | score |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = table.splitlines()[4:8]
    assert rows[0] == "| lora | arith | 7,168 | 7.583 | 406,272 | 1.5 | 35,900 | 540.2 | 0.5 |"
    assert rows[2] == "| qlora | arith | 7,168 | 7.583 | 215,040 | 3.25 | 9,000 | 600 | 0.25 |"
    assert rows[3] == "| qlora | sst2 | " + " | ".join(["failed"] * 7) + " |"
    # a column no job recorded is named, not shown as a column of n/a
    assert "not recorded by any ok job, left out: eval_examples_per_s" in table
    for name in ("resources.png", "loss_curves.png"):
        assert (sweep / name).read_bytes()[:4] == b"\x89PNG"
    assert not (sweep / "results.md").exists()  # the score table of a plain report is not overwritten
    assert "loss_curves.png" in capsys.readouterr().out


def test_the_eval_throughput_column_is_the_final_evaluation_of_either_recipe() -> None:
    assert with_derived({"before_eval_examples_per_s": 2.0, "after_eval_examples_per_s": 3.0})[
        "eval_examples_per_s"] == 3.0
    assert with_derived({"eval_examples_per_s": 4.0})["eval_examples_per_s"] == 4.0  # method=none
    assert with_derived({"eval_eval_examples_per_s": 5.0})["eval_examples_per_s"] == 5.0  # its name before the fix


@pytest.mark.parametrize(("args", "header", "first_row"), [
    (["--metric", "train_seconds,peak_rss_mb"], "| method | task | train_seconds | peak_rss_mb |",
     "| lora | arith | 1.5 | 540.2 |"),
    (["--metric", "model_bytes,score", "--rows", "method", "--cols", ""], "| method | model_bytes | score |",
     "| lora | 406,272 (n=2) | 0.625 (n=2) |"),
    (["--resources", "--rows", "task"], "| task | trainable_params | trainable_pct |", "| arith | 7,168 (n=2) |"),
], ids=["rows_x_cols", "rows_only_averaged", "resources_by_task"])
def test_several_metrics_are_columns_of_one_table(tmp_path: Path, args, header, first_row) -> None:
    sweep = resource_sweep(tmp_path)
    assert main([str(sweep), *args]) == 0
    stem = "resources" if "--resources" in args else "results"
    lines = (sweep / f"{stem}.md").read_text().splitlines()
    assert lines[0].startswith(("resources (", f"{args[1].replace(',', ', ')} (")), lines[0]
    assert lines[2].startswith(header) and lines[4].startswith(first_row)
    assert (sweep / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"


def test_a_bad_metric_among_several_is_one_line(tmp_path: Path, capsys) -> None:
    sweep = resource_sweep(tmp_path)
    assert main([str(sweep), "--metric", "train_seconds,peak_rss"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lora-lab-report: config error: --metric='peak_rss': not a number in any ok job's")
    assert err.count("\n") == 1 and not (sweep / "results.md").exists()


def test_loss_curves_are_labelled_by_the_swept_keys(tmp_path: Path, monkeypatch) -> None:
    sweep = resource_sweep(tmp_path)
    drawn = {}
    monkeypatch.setattr(report_cli, "loss_curves", lambda curves, path, title: drawn.update(curves)
                        or Path(path).write_bytes(b"png"))
    assert main([str(sweep)]) == 0
    assert list(drawn) == ["method=lora, task=arith", "method=lora, task=sst2", "method=qlora, task=arith"]
    assert drawn["method=qlora, task=arith"] == [5.7, 5.5, 5.2]  # model=tiny is not swept; the failed job has none
    assert drawn["method=lora, task=sst2"][0] == 0.7 and math.isnan(drawn["method=lora, task=sst2"][1])


def test_no_loss_history_writes_no_loss_figure(tmp_path: Path) -> None:
    sweep = resource_sweep(tmp_path)
    for path in sweep.glob("*/train_losses.json"):
        path.unlink()
    assert main([str(sweep)]) == 0
    assert (sweep / "results.png").is_file() and not (sweep / "loss_curves.png").exists()


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory) -> Path:
    """`-m method=lora,qlora` on the tiny model through the real Hydra app, in this process."""
    from lora_lab import cli

    sweep_dir = tmp_path_factory.mktemp("resources") / "sweep"
    argv = ["lora-lab", "-m", *TINY_JOB, "method=lora,qlora", "train.max_steps=3", "hardware.num_threads=1",
            f"hydra.sweep.dir={sweep_dir}"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        mp.setenv("LORA_LAB_RUN_TOKEN", "res000")
        cli.hydra_app()
    return sweep_dir


def test_a_real_sweep_records_the_4bit_footprint_and_reports_it(tiny_sweep: Path) -> None:
    lora, qlora = (json.loads((tiny_sweep / n / "metrics.json").read_text()) for n in ("0", "1"))
    assert lora["status"] == qlora["status"] == "ok"
    assert lora["trainable_params"] == qlora["trainable_params"]
    # the 4-bit base holds its linear weights at half a byte each: the float32 model less 3.5 bytes per weight
    # of every quantised linear layer (tiny: 2 layers of q, o 64x64; k, v 64x32; gate, up, down 64x128)
    quantised = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128)
    assert lora["model_bytes"] - qlora["model_bytes"] == 3.5 * quantised
    assert main([str(tiny_sweep), "--resources"]) == 0
    table = (tiny_sweep / "resources.md").read_text()
    assert "| method | task | trainable_params | trainable_pct | model_bytes | train_seconds |" in table
    assert f"| qlora | arith | {qlora['trainable_params']:,} |" in table
    losses = json.loads((tiny_sweep / "0" / "train_losses.json").read_text())["losses"]
    assert len(losses) == 3 and (tiny_sweep / "loss_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resources_of_a_sweep_whose_jobs_never_started(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["method=lora,qlora"]}}}), sweep / "multirun.yaml")
    assert main([str(sweep), "--resources"]) == 0  # no `task` anywhere: not a row key
    lines = (sweep / "resources.md").read_text().splitlines()
    assert lines[2:6] == ["| method | score |", "|---|---:|", "| lora | missing |", "| qlora | missing |"]
    assert lines[-1].startswith("not recorded by any ok job, left out: trainable_params,") and "score" not in lines[-1]
