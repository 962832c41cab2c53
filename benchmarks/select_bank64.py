"""Choose the SNI tasks of the `meta_bank64` bank (or a larger bank that nests it) and its held-out study targets,
reproducibly.

Shaped like the Lots-of-LoRAs bank: families of 2-6 sibling tasks (same source dataset, the word after the task
number, as `from_runs.member_source` reads it) plus singletons. Only tasks of the 665-task instances file with
100 instances, English output and short answers (median ≤ 8 words: the study generates 16 tokens per answer,
so long-answer tasks would be scored on truncated text) and prompts that fit 256 tokens are eligible; tasks of
the Lots-of-LoRAs list come first. Families are drawn at random (seeded) with sizes cycling over 2-6. Targets: one task from each of the first 16 families, so every target has a
sibling under leave-one-out and none under leave-source-out.

`--members N` (N > 64) grows the bank without changing the 64: the same draw first picks the 64 members and
their 16 targets exactly as before, then goes on with the same rules from where it stopped - the next families of
the same shuffled order (sizes cycling on), then further singletons, in the 64's proportion (12 of 64) - and adds
one target from each new family. So `meta_bank128` holds every `meta_bank64` member, its first 64 members in a
nested-size study can be exactly the 64 bank (`meta_study_bank64.py --inner-bank`), and its targets extend the 64's.

    python benchmarks/select_bank64.py --data <data>/sni665 --write conf/experiment/meta_bank64.yaml
    python benchmarks/select_bank64.py --data <data>/sni665 --members 128 \\
        --write conf/experiment/meta_bank128.yaml --targets-out benchmarks/meta_bank128_targets.txt
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
PRESET_LIST = "task.sni_task: >-\n"  # the sweep's member list in a preset: the rest of the file


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


class Draw:
    """The seeded drawing of families, singletons and targets; every call goes on from where the last stopped."""

    def __init__(self, data: Path, seed: int):
        tasks = eligible_tasks(data)
        lol = set((data / "lots_of_loras_tasks_502.txt").read_text().split())
        families: dict[str, list[str]] = defaultdict(list)
        for task in sorted(tasks, key=lambda t: (t not in lol, t)):
            families[source_of(task)].append(task)
        self.rng = random.Random(seed)
        self.groups = [families[name] for name in sorted(families) if len(families[name]) >= 2]
        self.rng.shuffle(self.groups)
        self.singles = sorted(t for f in families.values() for t in f if len(f) == 1)
        self.members: list[str] = []
        self.families: list[list[str]] = []  # in the order drawn
        self.used = 0  # groups taken so far; the family size cycles with it

    def add_families(self, budget: int) -> None:
        """Whole families (capped at the cycling size) while at least 2 of them fit: `budget` family members."""
        while self.used < len(self.groups):
            size = FAMILY_SIZES[self.used % len(FAMILY_SIZES)]
            take = self.groups[self.used][:min(size, budget - sum(map(len, self.families)))]
            if len(take) < 2:
                break
            self.members += take
            self.families.append(take)
            self.used += 1

    def add_singletons(self, total: int) -> None:
        free = [t for t in self.singles if t not in self.members]
        self.members += self.rng.sample(free, total - len(self.members))

    def targets(self, families: list[list[str]]) -> list[str]:
        return [self.rng.choice(family) for family in families]


def select(data: Path, seed: int = 0, members: int = MEMBERS) -> tuple[list[str], list[str]]:
    """(members, targets), both sorted; the 64-member draw is a prefix of every larger one."""
    if members < MEMBERS:
        raise SystemExit(f"--members {members}: at least {MEMBERS} (the 64 bank is nested in every larger one)")
    draw = Draw(data, seed)
    draw.add_families(MEMBERS - SINGLETONS)
    draw.add_singletons(MEMBERS)
    targets = draw.targets(draw.families[:TARGETS])
    if members > MEMBERS:  # go on with the same rules: families, then singletons in the 64's proportion
        first_new = len(draw.families)
        draw.add_families(members - round(members * SINGLETONS / MEMBERS))
        draw.add_singletons(members)
        targets += draw.targets(draw.families[first_new:])
    return sorted(draw.members), sorted(targets)


def preset_list(members: list[str]) -> str:
    """The members as the presets spell `task.sni_task`: three per line, comma-terminated."""
    lines = [",".join(members[i:i + 3]) for i in range(0, len(members), 3)]
    return ",\n".join(" " * 8 + line for line in lines) + "\n"


def write_preset(path: Path, members: list[str]) -> None:
    text = path.read_text()
    if PRESET_LIST not in text:
        raise SystemExit(f"{path}: no `{PRESET_LIST.strip()}` list to replace")
    path.write_text(text[:text.index(PRESET_LIST) + len(PRESET_LIST)] + preset_list(members))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the sni665 folder")
    parser.add_argument("--members", type=int, default=MEMBERS, help="bank size (>= 64; the 64 bank is nested)")
    parser.add_argument("--write", type=Path, default=None, help="replace this preset's task.sni_task list")
    parser.add_argument("--targets-out", type=Path, default=None, help="write the targets, one per line")
    args = parser.parse_args()
    members, targets = select(args.data, members=args.members)
    families = defaultdict(int)
    for task in members:
        families[source_of(task)] += 1
    sizes = sorted(families.values(), reverse=True)
    print(f"{len(members)} members in {sum(s >= 2 for s in sizes)} families {sizes}; {len(targets)} targets")
    print("members:", ",".join(members))
    print("targets:", ",".join(targets))
    if args.write:
        write_preset(args.write, members)
    if args.targets_out:
        args.targets_out.write_text("\n".join(targets) + "\n")


if __name__ == "__main__":
    main()
