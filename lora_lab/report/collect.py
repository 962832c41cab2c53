"""Collect one record per job of a multirun dir: its overrides and its metrics.json (or why it has none)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lora_lab.report.job_result import read_result
from lora_lab.utils.io import read_json

MISSING = "missing"
UNREADABLE = "unreadable"
REPLACED = ".replaced-"  # `<job dir>.replaced-<time>/`: a result moved aside by overwrite=true, not a job


@dataclass
class JobRecord:
    num: int
    run_dir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # why the job's metrics.json is absent or cannot be used (report/job_result.py)
    unreadable: bool = False  # it exists but is broken: status `unreadable`, not `missing`

    @property
    def status(self) -> str:
        if self.unreadable:
            return UNREADABLE
        return str(self.metrics.get("status", MISSING))

    def value(self, key: str) -> Any:
        """A grouping key: the job's override first, then a field of its metrics.json (method, task, ...)."""
        if key in self.overrides:
            return self.overrides[key]
        return self.metrics.get(key)

    def train_losses(self) -> list[float]:
        """The per-step train loss history (`train_losses.json`; a non-finite step is null there and NaN here),
        empty when the job wrote none."""
        losses = (read_json(self.run_dir / "train_losses.json") or {}).get("losses")
        if not isinstance(losses, list):
            return []
        return [float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan for x in losses]


def with_derived(metrics: dict[str, Any]) -> dict[str, Any]:
    """Add what follows from recorded numbers, so sweeps written before a field existed still report it, and
    fine-tuning and eval-only jobs share a column: `trainable_pct` = 100 · trainable_params / total_params;
    `eval_examples_per_s` = the final evaluation's throughput (`after_eval_examples_per_s`; method=none records
    `eval_examples_per_s` itself, jobs written before the stage prefix stopped doubling `eval_eval_examples_per_s`)."""
    derived = dict(metrics)
    trainable, total = metrics.get("trainable_params"), metrics.get("total_params")
    if isinstance(trainable, int) and isinstance(total, int) and total > 0:
        derived.setdefault("trainable_pct", 100.0 * trainable / total)
    for key in ("after_eval_examples_per_s", "eval_eval_examples_per_s"):
        if key in metrics:
            derived.setdefault("eval_examples_per_s", metrics[key])
    return derived


def swept_keys(records: list[JobRecord]) -> list[str]:
    """Override keys whose value differs between jobs: what tells one job of the sweep from another."""
    keys = dict.fromkeys(k for r in records for k in r.overrides)
    return [k for k in keys if len({r.overrides.get(k) for r in records}) > 1]


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _read_overrides(job_dir: Path) -> dict[str, str] | None:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return None
    return dict(_split(str(o)) for o in OmegaConf.load(path))


def expected_jobs(sweep_dir: Path) -> list[dict[str, str]]:
    """The jobs the sweep asked for, in Hydra's job-number order (the basic sweeper's cartesian product of the
    command-line overrides in `multirun.yaml`); empty when it cannot be read."""
    path = sweep_dir / "multirun.yaml"
    if not path.is_file():
        return []
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        hydra_cfg = OmegaConf.load(path).hydra
        # like BasicSweeper: `hydra.sweeper.params` (e.g. an experiment preset's grid) first, then the command line
        params = hydra_cfg.get("sweeper", {}).get("params") or {}
        arguments = [f"{k}={v}" for k, v in params.items()] + list(hydra_cfg.overrides.task)
        parsed = OverridesParser.create().parse_overrides(arguments)
        axes: dict[str, list[tuple[str, str]]] = {}  # a later override of the same key replaces it in place
        for override in parsed:
            key = override.get_key_element()
            values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [
                override.get_value_element_as_str()]
            axes[key] = [(key.lstrip("+~"), v) for v in values]
    except Exception:  # noqa: BLE001 — a report must not fail on an unusual sweep file; job dirs still count
        return []
    return [dict(combo) for combo in itertools.product(*axes.values())]


def job_dirs(sweep_dir: Path, expected: list[dict[str, str]]) -> dict[int, Path]:
    """Job number -> job dir. Numeric subdirs are Hydra's default; a preset may name them by a swept key
    (`hydra.sweep.subdir: ${task.sni_task}`), and then a dir takes the number of the expected job whose overrides
    it carries (one not in this launch's grid is numbered after it)."""
    found = {int(p.name): p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit()}
    named = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.isdigit() and (p / ".hydra").is_dir()
                   and REPLACED not in p.name)
    for job_dir in named:
        overrides = _read_overrides(job_dir) or {}
        num = next((i for i, combo in enumerate(expected)
                    if i not in found and all(overrides.get(k) == v for k, v in combo.items())), None)
        found[max([*found, len(expected) - 1]) + 1 if num is None else num] = job_dir
    return found


def collect(sweep_dir: Path) -> list[JobRecord]:
    """One record per job: numeric subdirs of the sweep dir, plus jobs that `multirun.yaml` expects but that
    never created their dir (status `missing`); a job whose metrics.json is broken is status `unreadable` with
    the reason in `problem`, never left out."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no such multirun dir: {sweep_dir}")
    expected = expected_jobs(sweep_dir)
    found = job_dirs(sweep_dir, expected)
    records = []
    for num in sorted(set(found) | set(range(len(expected)))):
        job_dir = found.get(num, sweep_dir / str(num))
        overrides = _read_overrides(job_dir)
        if overrides is None:
            overrides = dict(expected[num]) if num < len(expected) else {}
        result = read_result(job_dir)  # the one reader of job results: a usable record, or why not
        records.append(JobRecord(num=num, run_dir=job_dir, overrides=overrides,
                                 metrics=with_derived(result.metrics or {}), problem=result.problem,
                                 unreadable=result.unreadable))
    return records
