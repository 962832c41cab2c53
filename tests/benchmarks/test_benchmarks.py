"""CI runs the benchmarks in quick mode (model=tiny): they must run end to end and their memory facts hold.
No assertion on time — timings on shared CI machines are noise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.lab_helpers import REPO


def test_run_all_quick(tmp_path: Path):
    env = {**os.environ, "LORA_LAB_BENCH_RESULTS": str(tmp_path)}  # the committed results stay untouched
    proc = subprocess.run(
        [sys.executable, "benchmarks/run_all.py", "--quick", "--only", "bench_train.py,bench_memory.py"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train = json.loads((tmp_path / "train_tiny_lora_arith.json").read_text())
    variants = {r["variant"]: r for r in train["results"]}
    assert {"lora_lab", "baseline"} <= set(variants)
    assert variants["lora_lab"]["tokens_per_s"] > 0 and variants["baseline"]["tokens_per_s"] > 0
    assert train["attn_implementation"] == "sdpa"
    memory = json.loads((tmp_path / "memory_tiny_arith.json").read_text())
    assert all(f["holds"] is not False for f in memory["facts"])
    assert any(f["holds"] for f in memory["facts"])


def test_bench_peer_quick(tmp_path: Path):
    pytest.importorskip("trl")
    env = {**os.environ, "LORA_LAB_BENCH_RESULTS": str(tmp_path)}
    proc = subprocess.run([sys.executable, "benchmarks/bench_peer.py", "--quick", "--placements", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "peer_trl_tiny_arith.json").read_text())
    (placement,) = record["placements"]
    for side in ("lora_lab", "trl"):
        run = placement[side]
        assert len(run["losses"]) == record["steps"] and run["tokens_per_s"] > 0 and run["peak_rss_mb"] > 0
    assert record["summary"]["tokens_per_s_ratio"] > 0 and record["summary"]["peak_rss_ratio"] > 0
