"""Build a bank from this project's own fine-tuning runs: every finished job of a multirun becomes a member.

`python -m lora_lab.meta.from_runs <multirun dir> <bank dir>` copies each ok job's `adapter/` into the bank
and records the job's task config as the member's dataset, so meta-generation can rebuild that dataset's
token histogram later. Typical use:

    lora-lab -m method=lora task=sni task.sni_task=taskA,taskB,taskC ...
    python -m lora_lab.meta.from_runs outputs/multiruns/<sweep> banks/my_bank
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lora_lab.config.errors import ConfigError, DataError, exit_on_input_error
from lora_lab.config.resolvers import register_resolvers
from lora_lab.meta.bank import BANK_INDEX, write_bank_index
from lora_lab.utils.io import atomic_directory, read_json


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


def build_bank_from_runs(multirun_dirs: Path | list[Path], bank_dir: Path, force: bool = False) -> Path:
    """Every ok job of one or more multiruns (e.g. an SNI sweep and a sweep over other tasks) becomes a member.
    Everything is checked before the first adapter is copied, and the bank is assembled in a temp folder that
    replaces `bank_dir` in one rename, so a refused or failed build leaves the old bank (or nothing) behind."""
    bank_dir = Path(bank_dir)
    check_destination(bank_dir, force)
    members, base_models, jobs = [], set(), {}
    folders = [multirun_dirs] if isinstance(multirun_dirs, (str, Path)) else list(multirun_dirs)
    for metrics_path in sorted(p for folder in folders for p in Path(folder).rglob("metrics.json")):
        job = metrics_path.parent
        metrics = read_json(metrics_path) or {}  # unreadable: not a finished job
        config_path = job / ".hydra" / "config.yaml"
        if metrics.get("status") != "ok" or not (job / "adapter").is_dir() or not config_path.is_file():
            continue
        cfg = job_config(config_path)
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
    with atomic_directory(bank_dir) as staging:
        for name, job in jobs.items():
            shutil.copytree(job / "adapter", staging / "adapters" / name)
        write_bank_index(staging, base_models.pop(), members)
    return bank_dir / BANK_INDEX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dirs", type=Path, nargs="+", help="one or more multirun folders")
    parser.add_argument("bank_dir", type=Path)
    parser.add_argument("--force", action="store_true", help="replace an existing bank in bank_dir")
    args = parser.parse_args(argv)
    with exit_on_input_error("lora_lab.meta.from_runs"):
        print(build_bank_from_runs(args.multirun_dirs, args.bank_dir, force=args.force))


if __name__ == "__main__":
    main()
