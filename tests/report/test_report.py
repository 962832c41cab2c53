"""`lora-lab-report` on a synthetic multirun dir: ok, failed, missing-metrics and never-started jobs."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lora_lab.commands.report import main
from lora_lab.report.collect import collect


def fake_sweep(root: Path) -> Path:
    """`-m method=lora,none task=arith,sst2` = 4 jobs: 0 ok, 1 ok, 2 failed, 3 never started (no dir)."""
    sweep = root / "multiruns" / "2026-01-01_00-00-00_abc123"
    sweep.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["method=lora,none", "task=arith,sst2",
                                                                      "model=tiny"]}}}), sweep / "multirun.yaml")
    jobs = {0: ("lora", "arith", {"status": "ok", "score": 0.75}),
            1: ("lora", "sst2", {"status": "ok", "score": 0.5}),
            2: ("none", "arith", {"status": "failed", "error": "boom"})}
    for num, (method, task, metrics) in jobs.items():
        job = sweep / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"method={method}", f"task={task}", "model=tiny"]),
                       job / ".hydra" / "overrides.yaml")
        (job / "metrics.json").write_text(json.dumps({**metrics, "method": method, "task": task}))
    return sweep


def test_collect_enumerates_every_job(tmp_path: Path) -> None:
    records = collect(fake_sweep(tmp_path))
    assert [(r.num, r.status) for r in records] == [(0, "ok"), (1, "ok"), (2, "failed"), (3, "missing")]
    assert records[3].overrides == {"method": "none", "task": "sst2", "model": "tiny"}  # from multirun.yaml


def test_report_writes_csv_table_and_plot(tmp_path: Path, capsys) -> None:
    sweep = fake_sweep(tmp_path)
    # a started job that died before writing metrics.json is `missing` too
    (sweep / "1" / "metrics.json").unlink()
    assert main([str(sweep), "--rows", "method", "--cols", "task", "--metric", "score"]) == 0
    table = (sweep / "results.md").read_text()
    assert "| method \\ task | arith | sst2 |" in table
    assert "| lora | 0.75 | missing |" in table
    assert "| none | failed | missing |" in table
    assert table.startswith("score (4 jobs: 1 ok, 2 missing, 1 failed)")
    with open(sweep / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["job"], r["status"], r["method"], r["task"]) for r in rows] == [
        ("0", "ok", "lora", "arith"), ("1", "missing", "lora", "sst2"),
        ("2", "failed", "none", "arith"), ("3", "missing", "none", "sst2")]
    assert rows[0]["score"] == "0.75" and rows[2]["error"] == "boom"
    assert (sweep / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "results.csv" in capsys.readouterr().out


def test_repeated_cells_are_averaged_and_failures_counted(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path)
    assert main([str(sweep), "--rows", "task", "--cols", "", "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert "| arith | 0.75 + 1 failed |" in table
    assert "| sst2 | 0.5 + 1 missing |" in table


def test_sweeper_params_from_an_experiment_preset_are_expected_jobs(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    OmegaConf.save(OmegaConf.create({"hydra": {
        "sweeper": {"params": {"method.version": "base,normalized,mlp", "metric": "wd,kl,js,mmd"}},
        "overrides": {"task": ["experiment=meta_grid", "metric=wd,kl"]}}}), sweep / "multirun.yaml")
    records = collect(sweep)
    assert len(records) == 6 and all(r.status == "missing" for r in records)
    assert records[1].overrides == {"method.version": "base", "metric": "kl", "experiment": "meta_grid"}


def test_console_script_and_bad_dir(tmp_path: Path) -> None:
    result = subprocess.run(["lora-lab-report", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no such multirun dir" in result.stderr


def test_cli_defaults_are_method_by_task_score(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path)
    assert main([str(sweep)]) == 0
    table = (sweep / "results.md").read_text()
    assert table.startswith("score (4 jobs") and "| method \\ task | arith | sst2 |" in table


def _outputs(sweep: Path) -> dict[str, bytes]:
    return {name: (sweep / name).read_bytes() for name in ("results.csv", "results.md", "results.png")}


@pytest.mark.parametrize(("args", "line"), [
    (["--metric", "scor"], "--metric='scor': not a number in any ok job's metrics.json (choices: score)"),
    (["--metric", "method"], "--metric='method': not a number in any ok job's metrics.json (choices: score)"),
    (["--rows", "methd"], "--rows='methd': no job has this override or metrics.json key (choices: error, method,"),
    (["--cols", "task,seed"], "--cols='seed': no job has this override or metrics.json key (choices:"),
], ids=["typo_metric", "text_metric", "typo_rows", "unknown_col"])
def test_a_bad_argument_is_one_line_exit_2_and_keeps_the_good_results(tmp_path: Path, capsys, args, line) -> None:
    sweep = fake_sweep(tmp_path)
    assert main([str(sweep)]) == 0
    good = _outputs(sweep)
    capsys.readouterr()
    assert main([str(sweep), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lora-lab-report: config error: {line}") and err.count("\n") == 1
    assert _outputs(sweep) == good


def test_results_are_written_atomically_readable_and_a_full_disk_is_one_line(tmp_path: Path, capsys,
                                                                             monkeypatch) -> None:
    import errno
    import os
    import stat

    sweep = fake_sweep(tmp_path)
    old_umask = os.umask(0o022)
    try:
        assert main([str(sweep)]) == 0
    finally:
        os.umask(old_umask)
    assert {stat.S_IMODE((sweep / n).stat().st_mode) for n in ("results.csv", "results.md", "results.png")} == {0o644}
    good = _outputs(sweep)
    assert capsys.readouterr().err == "lora-lab-report: job 3: no job dir (never started); shown as missing\n"
    (sweep / "2" / "metrics.json").write_text(json.dumps({"status": "ok", "score": 0.1, "method": "none"}))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert main([str(sweep)]) == 2
    assert capsys.readouterr().err == (f"lora-lab-report: disk error: {sweep / 'results.csv'}: cannot write "
                                       "(No space left on device)\n")
    assert _outputs(sweep) == good
    assert not [p for p in sweep.iterdir() if p.name.startswith(".")]  # no temp file left


def test_job_dirs_named_by_a_swept_key_are_matched_to_their_jobs(tmp_path: Path) -> None:
    """A preset with `hydra.sweep.subdir: ${task.sni_task}` (the meta bank build): dirs are named by task, and a
    dir left by another launch into the same sweep dir is not one of this launch's jobs."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["task.sni_task=taskA,taskB,taskC"]}}}),
                   sweep / "multirun.yaml")
    for name, status in (("taskB", "ok"), ("taskA", "failed"), ("taskZ", "ok")):
        (sweep / name / ".hydra").mkdir(parents=True)
        OmegaConf.save(OmegaConf.create([f"task.sni_task={name}"]), sweep / name / ".hydra" / "overrides.yaml")
        (sweep / name / "metrics.json").write_text(json.dumps({"status": status}))
    records = collect(sweep)
    assert [(r.num, r.run_dir.name, r.status) for r in records] == [
        (0, "taskA", "failed"), (1, "taskB", "ok"), (2, "2", "missing"), (3, "taskZ", "ok")]


@pytest.mark.parametrize("broken", ['{"status": "ok", "score": 0.', '{"status": "ok", "score": NaN}', '["ok"]',
                                    '{"score": 0.5}'], ids=["truncated", "nan_score", "not_object", "no_status"])
def test_a_broken_metrics_file_is_named_shown_as_unreadable_and_exits_1(tmp_path: Path, capsys, broken) -> None:
    sweep = fake_sweep(tmp_path)
    (sweep / "1" / "metrics.json").write_text(broken)
    assert main([str(sweep)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"lora-lab-report: job 1: {sweep / '1' / 'metrics.json'}: ")
    assert err[0].endswith("; shown as a row with status unreadable")
    assert err[1] == "lora-lab-report: job 3: no job dir (never started); shown as missing" and len(err) == 2
    table = (sweep / "results.md").read_text()  # still written, with the job in it
    assert table.startswith("score (4 jobs: 1 ok, 1 unreadable, 1 failed, 1 missing)")
    assert "| lora | 0.75 | unreadable |" in table
    with open(sweep / "results.csv", newline="") as handle:
        row = list(csv.DictReader(handle))[1]
    assert row["status"] == "unreadable" and row["error"] == err[0].split(": ", 3)[3].split(";")[0]


def test_every_status_is_shown_as_itself(tmp_path: Path) -> None:
    sweep = fake_sweep(tmp_path)
    (sweep / "1" / "metrics.json").write_text(json.dumps({"status": "interrupted", "signal": "SIGTERM"}))
    (sweep / "2" / "metrics.json").write_text(json.dumps({"status": "refused", "error": "another config"}))
    assert main([str(sweep)]) == 0
    table = (sweep / "results.md").read_text()
    assert "| lora | 0.75 | interrupted |" in table and "| none | refused | missing |" in table
