"""Build a bank from this project's own fine-tuning runs: every finished job of a multirun becomes a member.

`python -m lora_lab.meta.from_runs <multirun dir> <bank dir>` copies each ok job's `adapter/` into the bank
and records the job's task config as the member's dataset, so meta-generation can rebuild that dataset's
token histogram later. Typical use:

    lora-lab -m method=lora task=sni task.sni_task=taskA,taskB,taskC ...
    python -m lora_lab.meta.from_runs outputs/multiruns/<sweep> banks/my_bank
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lora_lab.config.errors import DataError
from lora_lab.meta.bank import write_bank_index


def member_name(task: dict[str, Any], job: Path) -> str:
    """SNI jobs are named by their SNI task; other tasks by task name and job number (unique in a sweep)."""
    return str(task["sni_task"]) if task.get("sni_task") else f"{task['name']}_{job.name}"


def build_bank_from_runs(multirun_dir: Path, bank_dir: Path) -> Path:
    members, base_models = [], set()
    for metrics_path in sorted(Path(multirun_dir).rglob("metrics.json")):
        job = metrics_path.parent
        metrics = json.loads(metrics_path.read_text())
        config_path = job / ".hydra" / "config.yaml"
        if metrics.get("status") != "ok" or not (job / "adapter").is_dir() or not config_path.is_file():
            continue
        cfg = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
        name = member_name(cfg["task"], job)
        destination = bank_dir / "adapters" / name
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(job / "adapter", destination)
        base_models.add(cfg["model"]["name"])
        members.append(
            {
                "name": name,
                "adapter": f"adapters/{name}",
                "dataset": cfg["task"],
                "source": cfg["task"].get("source"),
            }
        )
    if not members:
        raise DataError(f"{multirun_dir}: no finished jobs with an adapter/ to put in a bank")
    if len(base_models) != 1:
        raise DataError(
            f"{multirun_dir}: jobs use different base models {sorted(base_models)}; one bank, one base"
        )
    return write_bank_index(bank_dir, base_models.pop(), members)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("multirun_dir", type=Path)
    parser.add_argument("bank_dir", type=Path)
    args = parser.parse_args(argv)
    print(build_bank_from_runs(args.multirun_dir, args.bank_dir))


if __name__ == "__main__":
    main()
