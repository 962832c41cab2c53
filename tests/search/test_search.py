"""`hparams_search=<preset>`: an Optuna study over real tiny-model jobs, seeded, resumable and honest about failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.search.space import parse_space, trial_overrides
from tests.helpers.sweep_helpers import TINY_JOB, cli_env, run_cli

SEARCH = ["-m", "hparams_search=lora", *TINY_JOB, "train.max_steps=2", "hydra.sweeper.n_trials=4"]


def results(outputs: Path, name: str = "lora-arith-tiny") -> dict:
    return json.loads((outputs / "searches" / name / "search_results.json").read_text())


def study(outputs: Path, name: str = "lora-arith-tiny") -> optuna.Study:
    db = outputs / "searches" / name / "optuna.db"
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db}")


def test_a_seeded_search_gives_the_same_parameters_twice(tmp_path: Path) -> None:
    runs = []
    for attempt in ("a", "b"):
        result = run_cli(SEARCH, tmp_path / attempt)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(results(tmp_path / attempt))
    assert [t["params"] for t in runs[0]["trials"]] == [t["params"] for t in runs[1]["trials"]]
    assert runs[0]["states"] == {"complete": 4} and runs[0]["direction"] == "maximize"
    best = runs[0]["best"]
    assert best["command"].startswith("lora-lab hparams_search=lora ") and "method.lr=" in best["command"]
    assert {"optimization_history.png", "param_importances.png"} <= set(runs[0]["figures"])
    assert runs[0]["study"] == "lora-arith-tiny"  # the preset's stable sweep dir names the study


def test_a_killed_search_resumes_with_the_trials_it_has(tmp_path: Path) -> None:
    """Killed (SIGKILL) while its third trial runs, then the same command again: 4 trials complete, not 6."""
    search_dir = tmp_path / "searches" / "lora-arith-tiny"
    code = "import sys\nfrom lora_lab.cli import main\nsys.argv = ['lora-lab', *sys.argv[1:]]\nmain()\n"
    process = subprocess.Popen([sys.executable, "-c", code, *SEARCH], env=cli_env(tmp_path),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (search_dir / "2").is_dir():  # trial 2's job dir: trials 0 and 1 are told to the study
            assert process.poll() is None and time.monotonic() < deadline, "the search ended before trial 2"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    before = study(tmp_path)
    assert [t.state.name for t in before.trials] == ["COMPLETE", "COMPLETE", "RUNNING"]

    result = run_cli(SEARCH, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study(tmp_path).trials
    assert [t.state.name for t in trials].count("COMPLETE") == 4
    assert trials[2].state.name == "FAIL" and trials[2].user_attrs["failure"].startswith("interrupted")
    assert [t.params for t in trials[:2]] == [t.params for t in before.trials[:2]]  # finished trials not rerun
    assert len(trials) == 5
    assert (search_dir / "interrupted" / "2").is_dir()  # the cut-short job, set aside; not counted as a job
    assert sorted(p.name for p in search_dir.iterdir() if p.name.isdigit()) == ["0", "1", "3", "4"]  # 2 not reused
    assert "2 jobs, 2 ok, 0 failed" in result.stdout  # this launch's trials 3 and 4 (2 was set aside)
    assert "not counted: 2 job dirs left by earlier launches (0, 1)" in result.stdout


def test_a_diverging_trial_is_failed_with_its_reason_and_the_search_goes_on(tmp_path: Path) -> None:
    # lr=1e30 diverges by step 2; the random sampler with this seed draws it 3 times in 4 (1e-3 once)
    args = [*SEARCH, "hydra.sweeper.sampler=random", "hydra.sweeper.seed=1", "method.lr=choice(1e-3,1e30)",
            "method.r=8", "method.alpha=16", "method.dropout=0.0", "train.max_steps=4", "train.warmup_ratio=0"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 1  # a failed job fails the multirun, as for any multirun
    assert "4 jobs, " in result.stderr and " failed" in result.stderr
    found = results(tmp_path)
    failed = [t for t in found["trials"] if t["state"] == "fail"]
    completed = [t for t in found["trials"] if t["state"] == "complete"]
    assert failed and completed and len(found["trials"]) == 4
    assert all(t["params"]["method.lr"] == 1e30 and "Diverged" in t["failure"] for t in failed)
    assert all(t["value"] is None for t in failed)
    assert found["best"]["params"]["method.lr"] == 1e-3


def test_the_space_reads_hydra_sweep_syntax() -> None:
    space, fixed = parse_space(["method.lr=tag(log, interval(1e-4, 1e-2))", "method.r=choice(4, 8)",
                                "method.alpha=range(8, 33, step=8)", "train.max_steps=interval(2, 9)",
                                "task.eval_limit=4", "method.r=choice(16, 32)"])
    assert space["method.lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)
    assert space["method.r"] == optuna.distributions.CategoricalDistribution([16, 32])  # the later one wins
    assert space["method.alpha"] == optuna.distributions.IntDistribution(8, 32, step=8)
    assert space["train.max_steps"] == optuna.distributions.IntDistribution(2, 9)
    assert fixed == ["task.eval_limit=4"]
    assert trial_overrides({"method.lr": 0.001, "method.bias": "lora_only", "x": True, "y": None}) == [
        "method.lr=0.001", "method.bias=lora_only", "x=true", "y=null"]
    with pytest.raises(ConfigError, match="interval is empty"):
        parse_space(["method.lr=interval(1e-2, 1e-4)"])


def test_every_preset_composes_with_a_space() -> None:
    from lora_lab.config.compose import CONF_DIR, compose_config

    presets = sorted(p.stem for p in (CONF_DIR / "hparams_search").glob("*.yaml"))
    assert {"lora", "qlora", "galore", "sparse_lora", "meta"} <= set(presets)
    for preset in presets:
        cfg = compose_config([f"hparams_search={preset}"], return_hydra_config=True)
        assert cfg.hydra.sweeper._target_.endswith("OptunaSearch")
        space, _ = parse_space([f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()])
        assert space and all(key.split(".")[0] in ("method", "metric", "train") for key in space)
        assert cfg.method.name == preset


def test_a_changed_search_in_the_same_dir_is_refused_in_one_line(tmp_path: Path) -> None:
    """Resuming is for the same search; another space would mix trials of two questions in one study."""
    first = run_cli([*SEARCH, "hydra.sweeper.n_trials=1"], tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    changed = run_cli([*SEARCH, "hydra.sweeper.n_trials=1", "train.warmup_ratio=interval(0,0.2)"], tmp_path)
    assert changed.returncode == 2
    lines = [line for line in changed.stderr.splitlines() if line.startswith("lora-lab:")]
    assert len(lines) == 1 and "hydra.sweep.dir=" in lines[0] and "another space" in lines[0]
    assert len(study(tmp_path).trials) == 1


def test_seeds_average_a_trial_and_final_seeds_rerun_the_best(tmp_path: Path) -> None:
    args = [*SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.seeds=[0,1]", "hydra.sweeper.final_seeds=[7,8]"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = results(tmp_path)
    for trial in found["trials"]:  # one job per seed, the trial's value their mean
        assert len(trial["run_dirs"]) == 2 and trial["value"] == pytest.approx(sum(trial["seed_values"]) / 2)
    final = found["final_seeds"]
    assert final["trial"] == found["best"]["number"] and set(final["seeds"]) == {"7", "8"}  # JSON keys
    assert final["mean"] is not None
    assert "6 jobs, 6 ok, 0 failed" in result.stdout  # 2 trials x 2 seeds + 2 held-out runs


def test_a_data_parallel_job_is_one_trial(tmp_path: Path) -> None:
    """With two gloo ranks per job, each rank does not become a trial of its own: 2 trials, 2 job dirs."""
    result = run_cli([*SEARCH, "hydra.sweeper.n_trials=2", "hardware=cpu_ddp", "train.grad_accum=1"], tmp_path,
                     timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [t.state.name for t in study(tmp_path).trials] == ["COMPLETE", "COMPLETE"]
    search_dir = tmp_path / "searches" / "lora-arith-tiny"
    assert sorted(p.name for p in search_dir.iterdir() if p.name.isdigit()) == ["0", "1"]
    for num in ("0", "1"):
        assert json.loads((search_dir / num / "metrics.json").read_text())["world_size"] == 2


@pytest.mark.parametrize(("override", "key"), [("hydra.sweeper.sampler=foo", "hydra.sweeper.sampler"),
                                               ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials"),
                                               ("hydra.sweeper.direction=up", "hydra.sweeper.direction")])
def test_a_bad_sweeper_setting_is_one_line_before_any_trial(tmp_path: Path, override: str, key: str) -> None:
    result = run_cli([*SEARCH, override], tmp_path)
    assert result.returncode == 2
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [next(line for line in lines if line.startswith(f"lora-lab: config error: {key}="))]
    assert not (tmp_path / "searches" / "lora-arith-tiny" / "0").exists()


def test_a_search_of_choices_only_counts_every_trial_as_a_job(tmp_path: Path) -> None:
    """The multirun's accounting counts a search's trials as they ran, not as a grid of its space (2 values here,
    3 trials)."""
    result = run_cli([*SEARCH, "hydra.sweeper.n_trials=3", "hydra.sweeper.params={}", "method.dropout=choice(0.0,0.1)"],
                     tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 jobs, 3 ok, 0 failed" in result.stdout


def test_a_full_disk_while_writing_the_results_is_one_line(tmp_path: Path) -> None:
    """The trials ran and are in the study; the results file cannot be written: one disk-error line, exit 2,
    no partial search_results.json."""
    prelude = ("import lora_lab.search.results as results\n"
               "from lora_lab.config.errors import StorageError\n"
               "def full(path, data): raise StorageError(f'{path}: cannot write (No space left on device)')\n"
               "results.atomic_write_json = full\n")
    result = run_cli([*SEARCH, "hydra.sweeper.n_trials=1"], tmp_path, prelude=prelude)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("lora-lab:")]
    assert len(lines) == 1 and lines[0].startswith("lora-lab: disk error: ") and "search_results.json" in lines[0]
    assert not (tmp_path / "searches" / "lora-arith-tiny" / "search_results.json").exists()
    assert [t.state.name for t in study(tmp_path).trials] == ["COMPLETE"]


def test_the_top_trials_are_confirmed_on_more_seeds_and_a_rerun_repeats_no_job(tmp_path: Path) -> None:
    """3 one-seed trials; the best 2 rerun on seeds 5 and 6; the chosen one has the best 3-seed mean and is the
    one the held-out seed runs. The same command again launches nothing: every run is in the study."""
    args = [*SEARCH, "hydra.sweeper.n_trials=3", "hydra.sweeper.confirm_top=2", "hydra.sweeper.confirm_seeds=[5,6]",
            "hydra.sweeper.final_seeds=[9]"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    found = results(tmp_path)
    rows = found["confirmation"]["trials"]
    trials = {t["number"]: t for t in found["trials"]}
    top_two = sorted(trials.values(), key=lambda t: (-t["value"], t["number"]))[:2]
    assert [r["trial"] for r in rows] == [t["number"] for t in top_two]
    for row in rows:
        every = [trials[row["trial"]]["value"], row["seeds"]["5"], row["seeds"]["6"]]
        assert row["mean"] == pytest.approx(sum(every) / 3)
    chosen = max(rows, key=lambda r: r["mean"])["trial"]
    assert found["confirmation"]["chosen"] == chosen == found["best"]["number"] == found["final_seeds"]["trial"]
    assert found["chosen_by"] == "confirmation"
    assert "8 jobs, 8 ok, 0 failed" in result.stdout  # 3 trials + 2 x 2 confirmations + 1 held-out run

    again = run_cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert results(tmp_path)["final_seeds"] == found["final_seeds"]
    search_dir = tmp_path / "searches" / "lora-arith-tiny"
    assert len([p for p in search_dir.iterdir() if p.name.isdigit()]) == 8


@pytest.mark.parametrize(("override", "key"), [("hydra.sweeper.confirm_top=2", "hydra.sweeper.confirm_seeds"),
                                               ("hydra.sweeper.final_seeds=[0]", "hydra.sweeper.final_seeds")])
def test_confirmation_and_held_out_seeds_are_checked_before_any_trial(tmp_path: Path, override: str,
                                                                       key: str) -> None:
    result = run_cli([*SEARCH, override], tmp_path)
    assert result.returncode == 2
    assert any(line.startswith(f"lora-lab: config error: {key}=") for line in result.stderr.splitlines())
    assert not (tmp_path / "searches" / "lora-arith-tiny" / "0").exists()
