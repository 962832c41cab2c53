"""The documented search: `hparams_search=lora` on the default task (SmolLM2-135M-Instruct, arith, CPU).

16 trials, 2 side by side (`hydra/launcher=local`, one thread each), scored on the task's accuracy after
training (the "before" evaluation is the same for every trial and is skipped); the 4 best trials are then
confirmed on seeds 1 and 2 (each trial screened on seed 0), the best 3-seed mean is chosen, and its parameters
are run again on 3 held-out seeds and compared with the default configuration's 3-seed mean
(`benchmarks/results/default_run_seeds.json`). Resumable: rerun the same command after a stop and the search
continues where it was (the study is in the sweep dir); wall time is summed over sittings. The study itself
(a small SQLite file, no weights) is kept in `benchmarks/results/` too, and put back into a fresh sweep dir, so a
search carries over to another machine or checkout.

    python benchmarks/hparams_search_default.py            # ~6 min per trial per core; hours in all
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from lora_lab.utils.io import atomic_write_json, atomic_write_text

HERE = Path(__file__).resolve().parent
FINAL_SEEDS = "[100,101,102]"
CONFIRM = ["hydra.sweeper.confirm_top=4", "hydra.sweeper.confirm_seeds=[1,2]"]  # the screen ran on seed 0


def keep_study(db: Path, kept: Path) -> None:
    """A consistent copy of the study (SQLite's own backup), written atomically beside the results JSON."""
    if not db.is_file():
        return
    tmp = kept.with_name(f".{kept.name}.tmp")
    with sqlite3.connect(db) as source, sqlite3.connect(tmp) as target:
        source.backup(target)
    os.replace(tmp, kept)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--sweep-dir", default="outputs/searches/default_lora_arith_smollm2")
    p.add_argument("--out", default=str(HERE / "results" / "hparams_search_smollm2_arith.json"))
    args = p.parse_args(argv)
    sweep = Path(args.sweep_dir).resolve()
    overrides = ["hparams_search=lora", f"hydra.sweeper.n_trials={args.trials}", "hydra.sweeper.n_jobs=2",
                 "hydra/launcher=local", "hardware.num_threads=1", "eval.before=false", "print_summary=false",
                 *CONFIRM, f"hydra.sweeper.final_seeds={FINAL_SEEDS}", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    kept_study = Path(args.out).with_suffix(".optuna.db")
    sweep.mkdir(parents=True, exist_ok=True)
    if kept_study.is_file() and not (sweep / "optuna.db").is_file():
        shutil.copy2(kept_study, sweep / "optuna.db")  # a search begun elsewhere goes on here
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "lora_lab", "-m", *overrides], env=env)
    keep_study(sweep / "optuna.db", kept_study)
    wall_file = sweep / "wall_seconds.txt"
    sittings = [float(x) for x in wall_file.read_text().split()] if wall_file.is_file() else []
    sittings.append(time.monotonic() - started)
    atomic_write_text(wall_file, " ".join(f"{s:.1f}" for s in sittings) + "\n")

    found_path = sweep / "search_results.json"
    if not found_path.is_file():
        print(f"no {found_path}: the search did not finish (exit {code}); rerun to resume")
        return code or 1
    found = json.loads(found_path.read_text())
    default = json.loads((HERE / "results" / "default_run_seeds.json").read_text())
    final = found.get("final_seeds") or {}
    paired = default_on_held_out(sweep.with_name(sweep.name + "-default-held-out"), env, final)
    summary = {
        "command": "lora-lab -m " + " ".join(o for o in overrides if not o.startswith("hydra.sweep.dir")),
        "task": "arith", "model": "smollm2_135m", "metric": "accuracy (after training, 50 held-out problems)",
        "n_trials": found["n_trials"], "states": found["states"], "space": found["space"],
        "best_trial": found["best"], "chosen_by": found.get("chosen_by"),
        "confirmation": found.get("confirmation"), "best_on_held_out_seeds": final,
        "default_3_seed": {"command": default["command"], "mean": default["after_mean"], "sd": default["after_sd"],
                           "per_seed": [r["after"] for r in default["runs"]]},
        "default_on_held_out_seeds": paired,
        "wall_seconds": sum(sittings), "sittings": len(sittings), "machine": "2 CPU cores, 2 trials side by side",
        "trials": [{k: t.get(k) for k in ("number", "state", "value", "params", "failure")} for t in found["trials"]],
    }
    atomic_write_json(Path(args.out), summary)
    print(f"best trial {found['best']['number']}: {found['best']['value']} ({found['best']['params']}); "
          f"held-out seeds mean {final.get('mean')} vs default {default['after_mean']} (seeds 0-2) and "
          f"{paired['mean']} on the same held-out seeds; wrote {args.out}")
    return code


def default_on_held_out(sweep: Path, env: dict[str, str], final: dict) -> dict:
    """The default configuration on the held-out seeds too: a paired comparison. The test problems are the same for
    every seed (`task.seed`); the run's seed draws the LoRA initialisation, the data order and dropout, and at 60
    steps that alone moves accuracy by 0.3, so two configurations are compared on the same seeds. Resumable:
    finished jobs are skipped by the run contract."""
    seeds = sorted(final.get("seeds") or {}, key=int)
    subprocess.call([sys.executable, "-m", "lora_lab", "-m", f"seed={','.join(seeds)}", "hydra/launcher=local",
                     "hardware.num_threads=1", "eval.before=false", "print_summary=false",
                     f"hydra.sweep.dir={sweep}"], env=env)
    scores = {}
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        metrics = json.loads((job / "metrics.json").read_text())
        scores[str(metrics["seed"]) if "seed" in metrics else seeds[int(job.name)]] = metrics.get("score")
    differences = [final["seeds"][s] - scores[s] for s in seeds if final["seeds"].get(s) is not None
                   and scores.get(s) is not None]
    return {"command": f"lora-lab -m seed={','.join(seeds)}", "per_seed": scores,
            "mean": sum(scores.values()) / len(scores) if scores and None not in scores.values() else None,
            "best_minus_default_per_seed": differences,
            "best_minus_default_mean": sum(differences) / len(differences) if differences else None}


if __name__ == "__main__":
    sys.exit(main())
