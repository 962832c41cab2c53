"""Run every benchmark that exists, one after another, each as its own process (clean memory, clean timing).

    python benchmarks/run_all.py --quick     # CI: model=tiny / small shapes, < 3 minutes, no timing assertions
    python benchmarks/run_all.py             # full: SmolLM2-135M on GSM8K-length data (needs the data)

Benchmarks owned by other parts of the project (bench_eval.py, bench_meta.py) run with their own --quick flag
when present and are skipped with a message when not. Results: benchmarks/results/*.json. Exit status is
non-zero when a benchmark fails (including a memory fact that does not hold).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = {  # name -> (extra args in quick mode, extra args in full mode)
    "bench_train.py": (["--quick"], []),
    "bench_memory.py": (["--quick"], []),
    "bench_eval.py": (["--quick"], []),
    "bench_meta.py": (["--quick"], []),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", default=None, help="comma list of benchmark files to run")
    args, rest = p.parse_known_args(argv)
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    status: list[tuple[str, str, float]] = []
    for name, (quick, full) in BENCHMARKS.items():
        if only and name not in only:
            continue
        path = HERE / name
        if not path.exists():
            print(f"== {name}: not present, skipped", flush=True)
            status.append((name, "absent", 0.0))
            continue
        cmd = [sys.executable, str(path), *(quick if args.quick else full), *rest]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        started = time.perf_counter()
        code = subprocess.run(cmd).returncode
        status.append((name, "ok" if code == 0 else f"FAILED ({code})", time.perf_counter() - started))
    print("\nbenchmark          status        seconds")
    for name, state, secs in status:
        print(f"{name:18s} {state:13s} {secs:7.1f}")
    return 1 if any(s.startswith("FAILED") for _, s, _ in status) else 0


if __name__ == "__main__":
    sys.exit(main())
