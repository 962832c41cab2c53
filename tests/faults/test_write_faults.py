"""The fault tier: every write point of a short job of each kind fails in turn (ENOSPC, EIO, EACCES, raised
the way each writer raises them), and the job is killed (SIGKILL/SIGTERM) at several points. After each fault
the run contract must hold (tests/helpers/fault_harness.py: exit 0 with every job ok and every file valid, or
exit > 0 / a kill with one clear line, no traceback, no broken file beside an ok status, no earlier good result
damaged), and a plain rerun must finish ok.

    python -m pytest -m faults                                 # run by .ci/run: the kinds in rotation
    LORA_LAB_FAULTS_ALL_KINDS=1 python -m pytest -m faults     # every kind at every write point
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.fault_harness import Outcome, contract_violations, invalid_files, run_forked, statuses
from tests.helpers.faults import KILL_FAULTS, WRITE_FAULTS, FaultPlan
from tests.helpers.sweep_helpers import cli_env

pytestmark = pytest.mark.faults

TINY = ["experiment=smoke", "task.num_train=16", "task.num_test=2", "task.eval_limit=2", "eval.before=false",
        "print_summary=false", "train.max_steps=1", "train.batch_size=2", "hardware.num_threads=1",
        "logger=none"]

EVALUATE = [key for key in TINY if not key.startswith(("train.", "eval.before"))]  # what evaluation reads


def lora_lab(*args: str) -> Callable[[], Any]:
    def entry() -> None:
        sys.argv = ["lora-lab", *args]
        from lora_lab.cli import main

        main()
    return entry


def report(*args: str) -> Callable[[], Any]:
    def entry() -> int:
        from lora_lab.commands.report import main

        return main(list(args))
    return entry


def from_runs(*args: str) -> Callable[[], Any]:
    def entry() -> None:
        from lora_lab.meta.from_runs import main

        main(list(args))
    return entry


def merge(*args: str) -> Callable[[], Any]:
    def entry() -> None:
        from lora_lab.commands.merge import main

        main(list(args))
    return entry


@pytest.fixture(scope="module")
def pool():
    """The processes every case is forked from: started clean by multiprocessing's fork server, never from the
    test process itself, which earlier tests may have left with running threads (torch's pools, tokenizers) that
    a forked child would inherit half-locked and hang on."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.helpers.fault_preload"])
    with context.Pool(WORKERS) as workers:
        yield workers


def make_inputs(root: Path) -> dict[str, Path]:
    """What the jobs read, made once without faults: an adapter, a finished sweep (with a report), a bank."""
    env = cli_env(root)
    made = run_forked(lora_lab(*TINY, f"hydra.run.dir={root / 'run'}"), env=env)
    assert made.ok, made.describe()
    sweep = root / "sweep"
    made = run_forked(lora_lab("-m", *TINY, "eval.after=true", "task.max_operand=5,60",
                               f"hydra.sweep.dir={sweep}"), env=env)
    assert made.ok, made.describe()
    made = run_forked(report(str(sweep)), env=env)
    assert made.ok, made.describe()
    made = run_forked(from_runs(str(sweep), str(root / "bank")), env=env)
    assert made.ok, made.describe()
    return {"root": root, "adapter": root / "run" / "adapter", "sweep": sweep, "bank": root / "bank"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, pool) -> dict[str, Path]:
    return pool.apply(make_inputs, (tmp_path_factory.mktemp("fault-inputs"),))


def job_kinds(inputs: dict[str, Path]) -> dict[str, Callable[[Path], Callable[[], Any]]]:
    """Job kind -> (case dir -> the job's entry). A case dir is fresh for every fault; what a job must not
    damage (a report's earlier results) is copied into it first."""
    def report_case(case: Path) -> Callable[[], Any]:
        if not (case / "sweep").exists():
            shutil.copytree(inputs["sweep"], case / "sweep")
        return report(str(case / "sweep"))

    return {
        "finetune": lambda case: lora_lab(*TINY, f"hydra.run.dir={case / 'run'}"),
        "evaluate": lambda case: lora_lab(*EVALUATE, "method=none", f"adapter_path={inputs['adapter']}",
                                          f"hydra.run.dir={case / 'run'}"),
        "meta": lambda case: lora_lab("model=tiny", "method=meta", f"method.bank_dir={inputs['bank']}",
                                      "method.target=arith_0", "task.eval_limit=2", "eval.before=false",
                                      "print_summary=false", "hardware.num_threads=1", "logger=none",
                                      f"hydra.run.dir={case / 'run'}"),
        "sweep": lambda case: lora_lab("-m", *TINY, "train.lr=1e-3,2e-3", f"hydra.sweep.dir={case / 'sweep'}"),
        "report": report_case,
        "from_runs": lambda case: from_runs(str(inputs["sweep"]), str(case / "bank")),
        "merge": lambda case: merge(str(inputs["adapter"]), str(case / "merged")),
    }


def check_case(kind: str, inputs: dict[str, Path], case: Path, plan: FaultPlan, env: dict[str, str]) -> list[str]:
    """One fault, then a plain rerun: the contract after each. Returns the violations, each naming the case."""
    make = job_kinds(inputs)[kind]
    if kind == "report":
        make(case)  # copies the earlier good results in before the fault
        before = {p.name: p.read_bytes() for p in (case / "sweep").glob("results.*")}
    outcome: Outcome = run_forked(make(case), plan, env=env)
    killed = plan.kind in KILL_FAULTS
    label = f"{kind} {plan.kind} at write {plan.at} ({outcome.fired})"
    found = [f"{label}: {p}\n    {outcome.describe()}" for p in contract_violations(outcome, case, killed=killed)]
    if kind == "report":  # an earlier good result is never damaged: each results file is the old one or valid
        for name, data in before.items():
            path = case / "sweep" / name
            if not path.is_file():
                found.append(f"{label}: earlier {name} lost")
            elif path.read_bytes() != data and invalid_files(path.parent / name):
                found.append(f"{label}: earlier {name} damaged")
    rerun = run_forked(make(case), env=env)
    if not rerun.ok or any(s != "ok" for s in statuses(case).values()):
        found.append(f"{label}: the plain rerun did not finish ok: {rerun.describe()} {statuses(case)}")
    found += [f"{label}: after the rerun: {p}" for p in contract_violations(rerun, case)]
    return found


def check_cases(pool, kind: str, inputs: dict[str, Path], cases: list[tuple[Path, FaultPlan]],
                env: dict[str, str]) -> list[str]:
    """`check_case` for every case, two at a time (each job runs one thread; the machine has two cores)."""
    found = pool.starmap(check_case, [(kind, inputs, case, plan, env) for case, plan in cases], chunksize=1)
    return [violation for violations in found for violation in violations]


WORKERS = 2
# LORA_LAB_FAULTS_ALL_KINDS=1: every fault kind at every write point (3x the cases; CI rotates the kinds)
ALL_KINDS = os.environ.get("LORA_LAB_FAULTS_ALL_KINDS") == "1"
KINDS = ("finetune", "evaluate", "meta", "sweep", "report", "from_runs", "merge")


def count_write_points(kind: str, inputs: dict[str, Path], env: dict[str, str], case: Path) -> int:
    """The job once without a fault: it must finish ok; how many write points it reaches."""
    counted = run_forked(job_kinds(inputs)[kind](case), FaultPlan(), env=env)
    assert counted.ok and counted.points > 0, counted.describe()
    return counted.points


def write_points(pool, kind: str, inputs: dict[str, Path], env: dict[str, str], case: Path) -> int:
    return pool.apply(count_write_points, (kind, inputs, env, case))


@pytest.mark.parametrize("kind", KINDS)
def test_every_write_point_fails_in_turn_and_the_contract_holds(kind: str, inputs, pool, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    points = write_points(pool, kind, inputs, env, tmp_path / "count")
    kinds = (lambda at: WRITE_FAULTS) if ALL_KINDS else (lambda at: [WRITE_FAULTS[at % len(WRITE_FAULTS)]])
    cases = [(tmp_path / f"fault-{at}-{fault}", FaultPlan(at=at, kind=fault))
             for at in range(1, points + 1) for fault in kinds(at)]
    violations = check_cases(pool, kind, inputs, cases, env)
    print(f"{kind}: {points} write points, {len(cases)} faults "
          f"({'every kind at every point' if ALL_KINDS else ', '.join(WRITE_FAULTS) + ' in turn'})")
    assert not violations, f"{len(violations)} of {len(cases)} faults broke the contract:\n" + \
        "\n".join(violations[:12])


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_killed_at_several_points_reruns_to_ok(kind: str, inputs, pool, tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    total = write_points(pool, kind, inputs, env, tmp_path / "count")
    points = sorted({max(1, total // 3), max(1, 2 * total // 3), total})
    cases = [(tmp_path / f"kill-{at}", FaultPlan(at=at, kind=KILL_FAULTS[index % len(KILL_FAULTS)]))
             for index, at in enumerate(points)]
    violations = check_cases(pool, kind, inputs, cases, env)
    assert not violations, "\n".join(violations[:12])
