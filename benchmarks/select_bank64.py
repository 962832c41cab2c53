"""Choose the 64 SNI tasks of the `meta_bank64` bank and its 16 held-out study targets, reproducibly.

Shaped like the Lots-of-LoRAs bank: families of 2-6 sibling tasks (same source dataset, the word after the task
number, as `from_runs.member_source` reads it) plus singletons. Only tasks of the 665-task instances file with
100 instances, English output and short answers (median ≤ 8 words: the study generates 16 tokens per answer,
so long-answer tasks would be scored on truncated text) and prompts that fit 256 tokens are eligible; tasks of
the Lots-of-LoRAs list come first. Families are drawn at random (seeded) with sizes cycling over 2-6. Targets: one task from each of the first 16 families, so every target has a
sibling under leave-one-out and none under leave-source-out.

    python benchmarks/select_bank64.py --data <data>/sni665 --write conf/experiment/meta_bank64.yaml
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
from collections import defaultdict
from pathlib import Path

MEMBERS, TARGETS, SINGLETONS = 64, 16, 12
FAMILY_SIZES = (6, 2, 5, 3, 4, 2, 3, 4)


def source_of(task: str) -> str:
    found = re.match(r"task\d+_([A-Za-z0-9]+)_", task)
    return found.group(1) if found else task


def eligible_tasks(data: Path) -> dict[str, dict]:
    meta = {json.loads(line)["task"]: json.loads(line) for line in (data / "sni_tasks.jsonl").open()}
    outputs, inputs = defaultdict(list), defaultdict(list)
    for line in (data / "sni_instances.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        out = row["output"][0] if isinstance(row["output"], list) else row["output"]
        outputs[row["task"]].append(len(str(out).split()))
        inputs[row["task"]].append(len(str(row["input"]).split()))
    keep = {}
    for task, info in meta.items():
        if len(outputs[task]) < 100 or info.get("output_lang") != "English":
            continue
        # ~1.4 tokens per word; the summary and the answer share the 256-token budget
        if statistics.median(outputs[task]) <= 8 and statistics.median(inputs[task]) <= 120:
            keep[task] = info
    return keep


def select(data: Path, seed: int = 0) -> tuple[list[str], list[str]]:
    tasks = eligible_tasks(data)
    lol = set((data / "lots_of_loras_tasks_502.txt").read_text().split())
    families: dict[str, list[str]] = defaultdict(list)
    for task in sorted(tasks, key=lambda t: (t not in lol, t)):
        families[source_of(task)].append(task)
    rng = random.Random(seed)
    groups = [families[name] for name in sorted(families) if len(families[name]) >= 2]
    rng.shuffle(groups)
    members, chosen_families = [], []
    for family, size in zip(groups, FAMILY_SIZES * len(groups), strict=False):  # sizes cycle over 2..6
        take = family[:min(size, MEMBERS - SINGLETONS - len(members))]
        if len(take) < 2:
            break
        members += take
        chosen_families.append(take)
    singles = sorted(t for f in families.values() for t in f if t not in members and len(f) == 1)
    members += rng.sample(singles, MEMBERS - len(members))
    targets = [rng.choice(family) for family in chosen_families[:TARGETS]]
    return sorted(members), sorted(targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the sni665 folder")
    parser.add_argument("--write", type=Path, default=None, help="print the lists into this preset's markers")
    args = parser.parse_args()
    members, targets = select(args.data)
    families = defaultdict(int)
    for task in members:
        families[source_of(task)] += 1
    sizes = sorted(families.values(), reverse=True)
    print(f"{len(members)} members in {sum(s >= 2 for s in sizes)} families {sizes}; {len(targets)} targets")
    print("members:", ",".join(members))
    print("targets:", ",".join(targets))


if __name__ == "__main__":
    main()
