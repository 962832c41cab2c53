"""Helper of check_latest.sh (standard library + packaging only).

With no argument: print pyproject.toml's dependencies (every extra) with their upper bounds removed, one
requirement a line, for `pip install -r`. With `--moved LOCK`: compare the installed versions against LOCK and
print what moved (and what stayed pinned, and why).
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# packages held back on purpose, with the reason printed in the report
PINNED = {"torch": "CPU build 2.13.0 (a newer torch from the index is a multi-GB CUDA build)"}


def requirements() -> list[Requirement]:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return [Requirement(line) for line in lines]


def uncapped(req: Requirement) -> str:
    kept = [str(s) for s in req.specifier if s.operator not in ("<", "<=", "==", "~=")]
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{','.join(kept)}"


def locked(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith((" ", "#")) and "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def report_moved(lock: Path) -> None:
    pins = locked(lock)
    moved = []
    for name, version in sorted(pins.items()):
        try:
            now = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if now.split("+")[0] != version.split("+")[0]:
            moved.append(f"  {name}: {version} -> {now}")
    print(f"## packages that moved from {lock} ({len(moved)})")
    print("\n".join(moved) if moved else "  none: the lock is the newest release of everything")
    print("## still pinned")
    for name, why in PINNED.items():
        print(f"  {name}: {why}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--moved"]:
        report_moved(Path(sys.argv[2]))
    else:
        print("\n".join(uncapped(r) for r in requirements() if canonicalize_name(r.name) not in PINNED))
