"""Integration tests against a real single-node SLURM cluster.

The cluster is started with ``launch/slurm_start.sh`` (installs slurm + munge
with apt-get when missing) and stopped with ``launch/slurm_stop.sh`` at the end
of the session, unless it was already running before the tests started.

When these tests run:

* ``LORA_LAB_SLURM_TESTS=1``: always (a missing prerequisite is a failure);
* ``LORA_LAB_SLURM_TESTS=0``: never;
* unset: when running as root on a machine with slurm or apt-get.

To add an end-to-end sweep test, use the ``slurm_partition`` fixture and
``run_command``, e.g.::

    def test_lora_lab_sweep(slurm_partition, tmp_path):
        run_command(
            ["lora-lab", "-m", "method=lora,none", "hydra/launcher=slurm", "model=tiny",
             f"hardware.slurm.partition={slurm_partition}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
            cwd=tmp_path, timeout=900,
        )
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO_ROOT / "launch" / "slurm_start.sh"
STOP_SCRIPT = REPO_ROOT / "launch" / "slurm_stop.sh"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.slurm


def _skip_reason() -> str | None:
    """Why the SLURM tests cannot run here, or None when they should run."""
    flag = os.environ.get("LORA_LAB_SLURM_TESTS", "").strip()
    if flag == "0":
        return "LORA_LAB_SLURM_TESTS=0"
    if flag == "1":
        return None  # forced: prerequisites that are missing make the tests fail
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to install and start slurm daemons (set LORA_LAB_SLURM_TESTS=1 to force)"
    have_slurm = all(shutil.which(b, path=SYSTEM_PATH) for b in ("slurmctld", "slurmd", "sbatch", "munged"))
    if not have_slurm and shutil.which("apt-get", path=SYSTEM_PATH) is None:
        return "slurm is not installed and apt-get is unavailable (set LORA_LAB_SLURM_TESTS=1 to force)"
    return None


_SKIP = _skip_reason()
if _SKIP is not None:
    pytestmark = [pytest.mark.slurm, pytest.mark.skip(reason=_SKIP)]


# ----------------------------------------------------------------- helpers ---
def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for child commands: this interpreter's bin dir (the venv) and the
    system dirs on PATH, so `sbatch`, the sacct wrapper and `lora-lab` resolve."""
    env = dict(os.environ)
    path = [str(Path(sys.executable).parent), *env.get("PATH", "").split(os.pathsep), *SYSTEM_PATH.split(":")]
    env["PATH"] = os.pathsep.join(dict.fromkeys(p for p in path if p))
    env.setdefault("HYDRA_FULL_ERROR", "1")
    if extra:
        env.update(extra)
    return env


def run_command(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion (a Hydra multirun on the submitit launcher blocks
    until every job has finished) and fail the test with its output on error."""
    start = time.monotonic()
    try:
        proc = subprocess.run(
            [str(c) for c in cmd],
            cwd=cwd,
            env=_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{exc.stdout}\n--- stderr ---\n{exc.stderr}\n{_cluster_report()}"
        )
    if check and proc.returncode != 0:
        pytest.fail(
            f"exit code {proc.returncode} after {time.monotonic() - start:.1f}s: {' '.join(map(str, cmd))}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}\n{_cluster_report()}"
        )
    return proc


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.5, what: str = "") -> None:
    """Poll ``predicate`` until it returns True; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}\n{_cluster_report()}")


def _cluster_report() -> str:
    parts = []
    for cmd in (["sinfo", "-N", "-l"], ["squeue", "-t", "all"]):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, env=_env())
            parts.append(f"--- {' '.join(cmd)} ---\n{out.stdout}{out.stderr}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            parts.append(f"--- {' '.join(cmd)} --- {exc}")
    return "\n".join(parts)


def _cluster_up() -> bool:
    if shutil.which("scontrol", path=SYSTEM_PATH) is None:
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10, env=_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in out.stdout


# ---------------------------------------------------------------- fixtures ---
@pytest.fixture(scope="session")
def slurm_partition() -> str:
    """Start the local cluster (idempotent) and yield its partition name. Stops it at
    the end of the session only if it was not running before."""
    was_running = _cluster_up()
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(START_SCRIPT)], capture_output=True, text=True, timeout=900, env=_env()
    )
    if proc.returncode != 0:
        pytest.fail(f"slurm_start.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    assert lines, f"slurm_start.sh printed no partition name:\n{proc.stderr}"
    partition = lines[-1].strip()
    print(f"slurm cluster ready in {time.monotonic() - start:.1f}s, partition {partition!r}")
    yield partition
    if not was_running:
        subprocess.run(["bash", str(STOP_SCRIPT)], capture_output=True, text=True, timeout=300, env=_env())


# ------------------------------------------------------------------- tests ---
def test_submitit_job_returns_result(slurm_partition: str, tmp_path: Path, monkeypatch) -> None:
    import submitit

    monkeypatch.setenv("PATH", _env()["PATH"])
    monkeypatch.setenv("LORA_LAB_TEST_MARKER", "inherited")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="slurm")
    executor.update_parameters(slurm_partition=slurm_partition, timeout_min=5, cpus_per_task=1, mem_gb=1)

    # Defined inside the test so cloudpickle ships it by value: the job cannot
    # import this test module (functions from importable modules are fine).
    def answer() -> tuple[int, str, str | None, str | None]:
        return 42, sys.executable, os.environ.get("SLURM_JOB_ID"), os.environ.get("LORA_LAB_TEST_MARKER")

    start = time.monotonic()
    job = executor.submit(answer)
    value, python, job_id, marker = job.result()
    elapsed = time.monotonic() - start
    assert value == 42
    assert job_id == job.job_id
    # The job runs this very interpreter (the venv) and inherits the submitting environment.
    assert Path(python) == Path(sys.executable)
    assert marker == "inherited"
    assert elapsed < 60, f"job took {elapsed:.1f}s"
    # Status polling goes through `sacct` (the wrapper installed by slurm_start.sh).
    assert job.get_info(mode="force").get("State") == "COMPLETED"


def test_cancelled_job_is_detected(slurm_partition: str, tmp_path: Path, monkeypatch) -> None:
    """A job that dies without writing a result must be reported finished (no endless wait)."""
    import submitit

    monkeypatch.setenv("PATH", _env()["PATH"])
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit" / "%j", cluster="slurm")
    executor.update_parameters(slurm_partition=slurm_partition, timeout_min=5, cpus_per_task=1, mem_gb=1)
    job = executor.submit(time.sleep, 600)
    wait_for(lambda: job.get_info(mode="force").get("State") == "RUNNING", timeout=60, what="job to run")
    job.cancel()
    wait_for(lambda: job.done(force_check=True), timeout=60, what="cancelled job to be done")
    assert job.state.startswith("CANCELLED")


_HYDRA_APP = textwrap.dedent(
    """
    import os, sys
    import hydra

    @hydra.main(version_base=None, config_path={config_path!r}, config_name={config_name!r})
    def main(cfg):
        out = os.path.join(cfg.out_dir, f"x{{cfg.x}}.txt")
        with open(out, "w") as f:
            f.write(f"{{cfg.x}} {{os.environ.get('SLURM_JOB_ID')}} {{sys.executable}}\\n")
        return cfg.x

    if __name__ == "__main__":
        main()
    """
)


def _write_app(tmp_path: Path, config_path: str | None, config_name: str | None) -> Path:
    app = tmp_path / "app.py"
    app.write_text(_HYDRA_APP.format(config_path=config_path, config_name=config_name))
    return app


def _check_outputs(out_dir: Path, values: Sequence[int]) -> None:
    files = sorted(out_dir.glob("x*.txt"))
    assert [f.name for f in files] == [f"x{v}.txt" for v in values]
    job_ids = set()
    for v in values:
        x, job_id, python = (out_dir / f"x{v}.txt").read_text().split()
        assert x == str(v)
        assert job_id != "None", "task did not run inside a SLURM job"
        assert Path(python) == Path(sys.executable)
        job_ids.add(job_id)
    assert len(job_ids) == len(values)


def test_hydra_sweep_on_submitit_slurm(slurm_partition: str, tmp_path: Path) -> None:
    app = _write_app(tmp_path, None, None)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run_command(
        [
            sys.executable, app, "-m", "+x=1,2,3", f"+out_dir={out_dir}",
            "hydra/launcher=submitit_slurm",
            f"hydra.launcher.partition={slurm_partition}",
            "hydra.launcher.timeout_min=5", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    _check_outputs(out_dir, [1, 2, 3])


def test_hydra_sweep_on_repo_slurm_launcher_config(slurm_partition: str, tmp_path: Path) -> None:
    """conf/hydra/launcher/slurm.yaml takes its resources from `hardware.slurm.*`."""
    conf = tmp_path / "conf"
    (conf / "hardware").mkdir(parents=True)
    (conf / "config.yaml").write_text("defaults:\n  - hardware: test\n  - _self_\nx: 0\nout_dir: ???\n")
    (conf / "hardware" / "test.yaml").write_text(
        textwrap.dedent(
            f"""
            slurm:
              partition: {slurm_partition}
              gpus_per_node: null
              cpus_per_task: 1
              mem_gb: 1
              timeout_min: 5
              array_parallelism: 2
              max_num_timeout: 0
              tasks_per_node: 1
              additional_parameters:
                comment: lora-lab-test
            """
        )
    )
    app = _write_app(tmp_path, "conf", "config")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sweep_dir = tmp_path / "sweep"
    run_command(
        [
            sys.executable, app, "-m", "x=1,2", f"out_dir={out_dir}",
            "hydra/launcher=slurm", f"hydra.searchpath=[file://{REPO_ROOT / 'conf'}]",
            f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    _check_outputs(out_dir, [1, 2])
    sbatch_scripts = list(sweep_dir.glob(".submitit/*/*submission.sh"))
    assert sbatch_scripts, "no submitit sbatch script found"
    script = sbatch_scripts[0].read_text()
    for flag in (
        f"--partition={slurm_partition}",
        "--cpus-per-task=1",
        "--mem=1GB",
        "--time=5",
        "--array=0-1%2",
        "--comment=lora-lab-test",
    ):
        assert f"#SBATCH {flag}" in script, f"{flag} missing from\n{script}"
    assert "--gpus-per-node" not in script


def test_lora_lab_sweep_on_slurm_then_report(slurm_partition: str, tmp_path: Path) -> None:
    """The real app end to end: a 3-job `lora-lab -m ... hydra/launcher=slurm` sweep on the tiny model, every
    job's metrics.json says ok, then `lora-lab-report` summarises the sweep dir."""
    import json

    sweep_dir = tmp_path / "sweep"
    sweep = [
        "lora-lab", "-m", "experiment=smoke", "method=lora", "method.r=2,4,8", "train.max_steps=4",
        "train.checkpoint_every=2", "task.num_train=32", "task.eval_limit=4", "eval.before=false",
        "print_summary=false", "hydra/launcher=slurm", f"hydra.launcher.partition={slurm_partition}",
        "hardware.slurm.mem_gb=2", "hardware.slurm.timeout_min=10", f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    env = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LORA_LAB_OUTPUTS": str(tmp_path / "outputs")}
    run_command(sweep, cwd=tmp_path, timeout=900, env=env)
    found = sorted(sweep_dir.glob("[0-9]*/metrics.json"))
    assert [p.parent.name for p in found] == ["0", "1", "2"]
    metrics = [json.loads(p.read_text()) for p in found]
    assert [m["status"] for m in metrics] == ["ok", "ok", "ok"], metrics
    assert all(m["train_steps"] == 4 and m["resumed_from_step"] == 0 for m in metrics)
    assert list(sweep_dir.glob(".submitit/*/*submission.sh")), "the jobs did not go through sbatch"

    report = run_command(["lora-lab-report", sweep_dir, "--rows", "method.r", "--cols", "task"], timeout=120)
    assert "3 jobs: 3 ok" in report.stdout
    for name in ("results.csv", "results.md", "results.png"):
        assert (sweep_dir / name).is_file(), name
    table = (sweep_dir / "results.md").read_text()
    assert all(f"| {r} |" in table for r in (2, 4, 8))

    # the same sweep with another config into the same dir: each job refused in its SLURM job, counted as such by
    # the submitting process (not as the ok results already there), exit 1
    changed = [a if a != "task.eval_limit=4" else "task.eval_limit=3" for a in sweep]
    rerun = run_command(changed, cwd=tmp_path, timeout=900, env=env, check=False)
    assert rerun.returncode == 1, rerun.stderr[-3000:]
    assert f"lora-lab: multirun {sweep_dir}: 3 jobs, 0 ok, 0 failed, 3 refused" in rerun.stderr
    assert "(task.eval_limit: 4 -> 3)" in rerun.stderr


def test_hparams_search_on_slurm_runs_trials_side_by_side(slurm_partition: str, tmp_path: Path) -> None:
    """`hparams_search=lora` through the SLURM launcher: 4 trials, 2 per batch as one job array each, all told to
    the study and written to search_results.json."""
    import json

    sweep_dir = tmp_path / "search"
    run_command(
        [
            "lora-lab", "-m", "hparams_search=lora", "experiment=smoke", "train.max_steps=2", "task.num_train=32",
            "task.eval_limit=4", "eval.before=false", "print_summary=false", "hydra.sweeper.n_trials=4",
            "hydra.sweeper.n_jobs=2", "hydra/launcher=slurm", f"hydra.launcher.partition={slurm_partition}",
            "hardware.slurm.mem_gb=2", "hardware.slurm.timeout_min=10", f"hydra.sweep.dir={sweep_dir}",
        ],
        cwd=tmp_path,
        timeout=900,
        env={"HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "LORA_LAB_OUTPUTS": str(tmp_path / "outputs")},
    )  # fmt: skip
    results = json.loads((sweep_dir / "search_results.json").read_text())
    assert results["states"] == {"complete": 4}
    assert sorted(p.parent.name for p in sweep_dir.glob("[0-9]*/metrics.json")) == ["0", "1", "2", "3"]
    assert len(list(sweep_dir.glob(".submitit/*/*submission.sh"))) >= 2, "each batch is one sbatch job array"
    assert results["best"]["value"] is not None
