"""Each speed/memory lever of lora-lab's training, measured against lora-lab without it.

One lever = one `bench_peer.py --against lora_lab` pair: the run with the lever and the run without it train
the same rows at the same time, each pinned to its own core, then swapped; the ratio is the mean of both
placements, so a shared machine's load falls on both alike. Each pair's JSON goes to
`benchmarks/results/lever_<model>_<task>_<lever>.json` (a finished lever is not rerun: delete its file to
measure again), and the table of all of them to `levers_<model>_<task>.json`.

    python benchmarks/bench_levers.py --data-dir /path/to/gsm8k --steps 6
    python benchmarks/bench_levers.py --quick        # model=tiny: the mechanics in seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

# name -> (overrides with the lever, overrides of the run without it, what the lever is)
LEVERS: dict[str, tuple[list[str], list[str], str]] = {
    "micro_batch_2": (["train.micro_batch_size=2"], [],
                      "each batch of 8 as 4 micro-batches of 2 rows (same gradient)"),
    "micro_batch_1": (["train.micro_batch_size=1"], [],
                      "each batch of 8 as 8 single rows (same gradient, no padding, no attention mask)"),
    "bf16_autocast": (["hardware.precision=bfloat16"], [],
                      "CPU bf16 autocast, float32 weights"),
    "bf16_base": (["hardware.precision=bfloat16", "model.dtype=bfloat16"], ["hardware.precision=bfloat16"],
                  "frozen base stored in bf16 (adapter float32), against bf16 autocast over a float32 base"),
    "answer_only_logits": (["train.answer_only_logits=true"], ["train.answer_only_logits=false"],
                           "vocabulary projection only at answer positions"),
    "group_by_length": (["train.group_by_length=true"], ["train.group_by_length=false"],
                        "length-grouped batches (less padding)"),
    "grad_ckpt": (["train.gradient_checkpointing=true"], [],
                  "activation checkpointing (recompute in backward)"),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--levers", default=",".join(LEVERS), help="comma-separated subset of: " + ",".join(LEVERS))
    p.add_argument("--base", nargs="*", default=[], help="overrides both sides get (e.g. train.micro_batch_size=2)")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    model, task = ("tiny", "arith") if args.quick else ("smollm2_135m", "gsm8k")
    rows = {}
    for name in args.levers.split(","):
        with_lever, without, what = LEVERS[name]
        out = (Path("/tmp") if args.quick else RESULTS) / f"lever_{model}_{task}_{name}.json"
        if not out.exists():
            cmd = [sys.executable, str(HERE / "bench_peer.py"), "--against", "lora_lab", f"--steps={args.steps}",
                   "--out", str(out), "--overrides", *args.base, *with_lever, "--against-overrides", *args.base,
                   *without, *(["--quick"] if args.quick else []),
                   *([f"--data-dir={args.data_dir}"] if args.data_dir else [])]
            print(f"bench_levers: {name}: {' '.join(cmd[2:])}", flush=True)
            if subprocess.call(cmd) != 0:
                print(f"bench_levers: {name} failed; going on", flush=True)
                continue
        record = json.loads(out.read_text())
        summary = record["summary"]
        rows[name] = {"what": what, "with": with_lever, "without": without, "base": args.base,
                      "tokens_per_s_ratio": summary["tokens_per_s_ratio"],
                      "per_placement_ratio": summary["per_placement_ratio"],
                      "peak_rss_ratio": summary["peak_rss_ratio"], "loss_means": summary["loss_means"],
                      "steps": record["steps"], "file": out.name}
    table = (Path("/tmp") if args.quick else RESULTS) / f"levers_{model}_{task}.json"
    previous = json.loads(table.read_text())["levers"] if table.exists() else {}
    table.write_text(json.dumps({"model": model, "task": task, "levers": {**previous, **rows}}, indent=1))
    print(f"{'lever':>20} {'tok/s ×':>8} {'RSS ×':>6}  per placement")
    for name, row in rows.items():
        print(f"{name:>20} {row['tokens_per_s_ratio']:>8.2f} {row['peak_rss_ratio']:>6.2f}  "
              f"{', '.join(f'{r:.2f}' for r in row['per_placement_ratio'])}")
    print(f"wrote {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
