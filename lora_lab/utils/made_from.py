"""What a tool's output was made from, so that rerunning the same command is a no-op, not a refusal.

A tool that writes a folder once (`lora-lab-merge`, `from_runs`) refuses to replace an existing output. If it was
stopped after the output was complete (killed between the last rename and its exit, or a failed fsync after the
rename), the same command must still succeed: the output records its request (`made_from.json`: the tool, its
arguments, a digest of every input file), and a rerun whose request is the same finds the work done.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lora_lab.utils.io import atomic_write_json

MADE_FROM = "made_from.json"


def folder_digest(folders: Iterable[str | Path]) -> str:
    """sha256 over every file of `folders` (relative name and bytes), in a fixed order."""
    hasher = hashlib.sha256()
    for folder in folders:
        folder = Path(folder)
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            hasher.update(str(path.relative_to(folder)).encode() + b"\0")
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    hasher.update(chunk)
    return hasher.hexdigest()


def record(folder: str | Path, request: Mapping[str, Any]) -> None:
    atomic_write_json(Path(folder) / MADE_FROM, dict(request))


def already_made(folder: str | Path, request: Mapping[str, Any]) -> bool:
    """Whether `folder` is a complete output of exactly this request."""
    path = Path(folder) / MADE_FROM
    try:
        return json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(dict(request)))
    except (OSError, ValueError):
        return False
