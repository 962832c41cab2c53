"""A launch's accounting from its attempt records: each job counted as what it was in this launch, whatever an
earlier launch left in its metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from lora_lab.report.launch_outcome import launch_outcome

LAUNCH = "20260101-000000-1-abcdef"
OK = {"status": "ok", "score": 0.5}


def job(sweep: Path, num: int, overrides: list[str], metrics: dict | str | None = None,
        attempts: dict[str, dict] | None = None) -> None:
    job_dir = sweep / str(num)
    (job_dir / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job_dir / ".hydra" / "overrides.yaml")
    if metrics is not None:
        (job_dir / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    for launch, record in (attempts or {}).items():
        (job_dir / ".attempts").mkdir(exist_ok=True)
        (job_dir / ".attempts" / f"{launch}.json").write_text(json.dumps({"launch": launch, **record}))


def sweep_of(root: Path, *overrides: str) -> Path:
    sweep = root / "sweep"
    sweep.mkdir()
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": list(overrides)}}}), sweep / "multirun.yaml")
    return sweep


def test_every_job_is_counted_as_what_it_was_in_this_launch(tmp_path: Path) -> None:
    sweep = sweep_of(tmp_path, "seed=0,1,2,3,4,5,6,7")
    this = lambda outcome, reason=None: {LAUNCH: {"outcome": outcome, "reason": reason}}  # noqa: E731
    job(sweep, 0, ["seed=0"], OK, this("ok"))
    job(sweep, 1, ["seed=1"], OK, this("skipped", "already finished"))
    # the fault this guards against: a refused rerun next to the good result an earlier launch left
    job(sweep, 2, ["seed=2"], OK, this("refused", "hydra.run.dir=...: holds a finished result of another config"))
    job(sweep, 3, ["seed=3"], {"status": "failed", "error": "boom"}, this("failed", "boom"))
    job(sweep, 4, ["seed=4"], {"status": "interrupted"}, this("interrupted", "interrupted by SIGINT"))
    job(sweep, 5, ["seed=5"], None, {LAUNCH: {"outcome": "running", "pid": 42, "host": "h", "time": "t"}})
    job(sweep, 6, ["seed=6"], OK, {"older-launch": {"outcome": "ok"}})  # killed before this launch reached it
    job(sweep, 7, ["seed=7"], '{"status": "ok", "sco', this("ok"))
    job(sweep, 8, ["seed=8"], OK, {"older-launch": {"outcome": "ok"}})  # outside this launch's grid

    found = launch_outcome(sweep, LAUNCH)
    assert found.tally() == ("8 jobs, 1 ok, 1 failed, 1 skipped (already done), 1 refused, 1 interrupted, "
                             "2 missing, 1 unreadable")
    assert not found.fine
    notes = found.notes()
    assert notes[:7] == [
        "job 2 refused: hydra.run.dir=...: holds a finished result of another config",
        "job 3 failed: boom",
        "job 4 interrupted: interrupted by SIGINT",
        "job 5 missing: started (pid 42 on h, t) but recorded no outcome: killed?",
        "job 6 missing: no record of this launch: never started, or killed before it began",
        f"job 7 unreadable: ended ok but {sweep / '7'}/metrics.json: not valid JSON, truncated? (Unterminated "
        "string starting at: line 1 column 18 (char 17))",
        "not counted: 1 job dirs left by earlier launches (8)",
    ]


def test_ok_and_skipped_jobs_are_fine_and_ignored_keys_are_named_once(tmp_path: Path) -> None:
    sweep = sweep_of(tmp_path, "method=lora,none", "seed=0,1")
    grid = [("lora", 0), ("lora", 1), ("none", 0), ("none", 1)]
    for num, (method, seed) in enumerate(grid):
        metrics = {**OK, "method": method}
        if method == "none":
            metrics["ignored_keys"] = ["train.lr"]
            if seed == 1:
                metrics["ignored_task_keys"] = "task.max_input_chars"
        job(sweep, num, [f"method={method}", f"seed={seed}"], metrics,
            {LAUNCH: {"outcome": "skipped" if num == 0 else "ok"}})
    found = launch_outcome(sweep, LAUNCH)
    assert found.fine and found.tally() == "4 jobs, 3 ok, 0 failed, 1 skipped (already done)"
    assert found.notes() == ["ignored by 2 of 4 jobs (method=none): train.lr",
                             "ignored by 1 of 4 jobs (method=none, seed=1): task.max_input_chars"]
