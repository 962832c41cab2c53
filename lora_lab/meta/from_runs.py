"""Build a bank from this project's own fine-tuning runs: every finished job of a multirun becomes a member.

`python -m lora_lab.meta.from_runs <multirun dir> <bank dir>` copies each ok job's `adapter/` into the bank
and records the job's task config as the member's dataset, so meta-generation can rebuild that dataset's
token histogram later. Every other job found is named on stderr with the reason it was left out; one whose
metrics.json cannot be read makes the exit code 1 (the bank is still built). Typical use:

    lora-lab -m method=lora task=sni task.sni_task=taskA,taskB,taskC ...
    python -m lora_lab.meta.from_runs outputs/multiruns/<sweep> banks/my_bank
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lora_lab.config.errors import ConfigError, DataError, exit_on_input_error
from lora_lab.config.resolvers import register_resolvers
from lora_lab.meta.bank import BANK_INDEX, write_bank_index
from lora_lab.report.job_result import METRICS_FILE, read_result
from lora_lab.utils.io import atomic_directory
from lora_lab.utils.made_from import already_made, folder_digest, record

PROGRAM = "lora_lab.meta.from_runs"


def member_name(task: dict[str, Any], job: Path) -> str:
    """SNI jobs are named by their SNI task; other tasks by task name and job number (unique in a sweep)."""
    return str(task["sni_task"]) if task.get("sni_task") else f"{task['name']}_{job.name}"


def job_config(config_path: Path) -> dict[str, Any]:
    """A job's saved config with its model and task sections resolved (`${task.sni_task}`, `${data_dir:...}`),
    so a member's dataset reference stands on its own outside the job."""
    register_resolvers()
    cfg = OmegaConf.load(config_path)
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "task")}


def member_source(task: dict[str, Any]) -> str | None:
    """`task.source` when set; SNI tasks otherwise share a source when their names share the dataset word
    (task1146_country_capital and task1147_country_currency are both `country`)."""
    if task.get("source"):
        return str(task["source"])
    found = re.match(r"task\d+_([A-Za-z0-9]+)_", str(task.get("sni_task") or ""))
    return found.group(1) if found else None


def check_destination(bank_dir: Path, force: bool) -> None:
    """An existing bank (or any non-empty folder) is replaced only when asked: a bank build never overwrites
    silently."""
    if bank_dir.exists() and not bank_dir.is_dir():
        raise ConfigError("bank_dir", str(bank_dir), "exists and is not a folder")
    if force or not bank_dir.is_dir():
        return
    if (bank_dir / BANK_INDEX).exists():
        raise ConfigError("bank_dir", str(bank_dir), f"already holds a bank ({BANK_INDEX}); pass --force to "
                          "replace it")
    if any(bank_dir.iterdir()):
        raise ConfigError("bank_dir", str(bank_dir), "is a non-empty folder without a bank; pick a new folder "
                          "or pass --force to replace it")


@dataclass(frozen=True)
class LeftOut:
    job: Path
    reason: str
    unreadable: bool = False  # its metrics.json exists but cannot be used: the command exits 1


def job_dirs_under(folders: list[Path]) -> list[Path]:
    """Every job dir under the folders: one with a metrics.json, or with Hydra's `.hydra/` (a job that died before
    writing its metrics.json is found too, and named as left out)."""
    return sorted({p.parent for folder in folders for name in (METRICS_FILE, ".hydra")
                   for p in Path(folder).rglob(name)})


def why_left_out(job: Path) -> LeftOut | None:
    """None for a job that can be a member: a usable metrics.json (report/job_result.py) saying ok, an adapter/
    and the config Hydra saved."""
    result = read_result(job)
    if result.metrics is None:
        where = f"{METRICS_FILE}: " if result.unreadable else ""
        return LeftOut(job, where + str(result.problem), unreadable=result.unreadable)
    if result.metrics["status"] != "ok":
        return LeftOut(job, f"status {result.metrics['status']}")
    if not (job / "adapter").is_dir():
        return LeftOut(job, "no adapter/")
    if not (job / ".hydra" / "config.yaml").is_file():
        return LeftOut(job, "no .hydra/config.yaml")
    return None


def build_bank_from_runs(multirun_dirs: Path | list[Path], bank_dir: Path, force: bool = False,
                         left_out: list[LeftOut] | None = None) -> Path:
    """Every ok job of one or more multiruns (e.g. an SNI sweep and a sweep over other tasks) becomes a member;
    every other job found is appended to `left_out` with the reason. Everything is checked before the first
    adapter is copied, and the bank is assembled in a temp folder that replaces `bank_dir` in one rename, so a
    refused or failed build leaves the old bank (or nothing) behind."""
    bank_dir = Path(bank_dir)
    members, base_models, jobs = [], set(), {}
    left_out = [] if left_out is None else left_out
    folders = [multirun_dirs] if isinstance(multirun_dirs, (str, Path)) else list(multirun_dirs)
    for job in job_dirs_under(folders):
        why = why_left_out(job)
        if why is not None:
            left_out.append(why)
            continue
        cfg = job_config(job / ".hydra" / "config.yaml")
        name = member_name(cfg["task"], job)
        if name in jobs:
            raise DataError(f"{job}: member name {name!r} is also job {jobs[name]}; one adapter per member")
        jobs[name] = job
        base_models.add(str(cfg["model"].get("hub_id") or cfg["model"]["name"]))  # what adapters record
        members.append(
            {
                "name": name,
                "adapter": f"adapters/{name}",
                "dataset": cfg["task"],
                "source": member_source(cfg["task"]),
            }
        )
    where = ", ".join(map(str, folders))
    if not members:
        raise DataError(f"{where}: no finished jobs with an adapter/ to put in a bank")
    if len(base_models) != 1:
        raise DataError(
            f"{where}: jobs use different base models {sorted(base_models)}; one bank, one base"
        )
    request = {"tool": "from_runs", "members": {name: str(job.resolve()) for name, job in sorted(jobs.items())},
               "adapters_digest": folder_digest(jobs[name] / "adapter" for name in sorted(jobs))}
    if not force and already_made(bank_dir, request):  # built before from the same runs (e.g. killed at the end)
        print(f"{PROGRAM}: {bank_dir} already holds the bank of these runs (made_from.json); nothing to do",
              file=sys.stderr, flush=True)
        return bank_dir / BANK_INDEX
    check_destination(bank_dir, force)
    with atomic_directory(bank_dir) as staging:
        for name, job in jobs.items():
            shutil.copytree(job / "adapter", staging / "adapters" / name)
        write_bank_index(staging, base_models.pop(), members)
        record(staging, request)
    return bank_dir / BANK_INDEX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dirs", type=Path, nargs="+", help="one or more multirun folders")
    parser.add_argument("bank_dir", type=Path)
    parser.add_argument("--force", action="store_true", help="replace an existing bank in bank_dir")
    args = parser.parse_args(argv)
    left_out: list[LeftOut] = []
    with exit_on_input_error(PROGRAM):
        try:
            print(build_bank_from_runs(args.multirun_dirs, args.bank_dir, force=args.force, left_out=left_out))
        finally:  # every job found and not put in the bank is named, with why, even when the build fails
            for why in left_out:
                print(f"{PROGRAM}: left out {why.job}: {why.reason}", file=sys.stderr)
    if any(why.unreadable for why in left_out):
        sys.exit(1)  # the bank is built, but a job whose record cannot be read may have belonged in it


if __name__ == "__main__":
    main()
