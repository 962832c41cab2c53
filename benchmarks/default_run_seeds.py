"""The README's default-run figures, reproduced: `lora-lab` with no overrides, over 3 seeds.

Runs `lora-lab -m seed=0,1,2` (SmolLM2-135M-Instruct, task=arith, method=lora: the defaults) in one sweep dir,
then reads every job's metrics.json and writes the before → after score per seed with the mean and spread to
`benchmarks/results/default_run_seeds.json`. The sweep is resumable: a finished job is skipped on a rerun.

    python benchmarks/default_run_seeds.py                 # 11-15 min per seed on 2 shared CPU cores
    python benchmarks/default_run_seeds.py --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--sweep-dir", default="outputs/default_run_seeds")
    p.add_argument("--out", default=str(HERE / "results" / "default_run_seeds.json"))
    args = p.parse_args(argv)
    sweep = Path(args.sweep_dir).resolve()
    cmd = [sys.executable, "-m", "lora_lab", "-m", f"seed={args.seeds}", f"hydra.sweep.dir={sweep}",
           "hydra.sweep.subdir=seed${seed}", "print_summary=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    code = subprocess.call(cmd, env=env)
    runs = []
    for seed in args.seeds.split(","):
        path = sweep / f"seed{seed}" / "metrics.json"
        m = json.loads(path.read_text()) if path.exists() else {"status": "missing"}
        name = m.get("primary_metric")
        runs.append({"seed": int(seed), "status": m.get("status"), "before": m.get(f"before_{name}"),
                     "after": m.get(f"after_{name}"), "metric": name,
                     "train_seconds": m.get("train_seconds"), "final_train_loss": m.get("final_train_loss")})
    after = [r["after"] for r in runs if isinstance(r["after"], int | float)]
    before = [r["before"] for r in runs if isinstance(r["before"], int | float)]
    summary = {
        "command": "lora-lab -m seed=" + args.seeds, "runs": runs,
        "before_mean": statistics.mean(before) if before else None,
        "after_mean": statistics.mean(after) if after else None,
        "after_sd": statistics.stdev(after) if len(after) > 1 else None,
        "after_min": min(after) if after else None, "after_max": max(after) if after else None,
    }
    Path(args.out).write_text(json.dumps(summary, indent=1))
    for r in runs:
        print(f"seed {r['seed']}: {r['status']} {r['metric']} {r['before']} -> {r['after']}")
    print(f"after: mean {summary['after_mean']}, sd {summary['after_sd']}, range {summary['after_min']}-"
          f"{summary['after_max']}; wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
