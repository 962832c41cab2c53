"""Per-example prediction records, written as JSON lines so a user can read what the model said."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lora_lab.utils.io import atomic_write_text, to_json_line


@dataclass
class EvalResult:
    metrics: dict[str, float]
    records: list[dict[str, Any]] = field(default_factory=list)

    def save_predictions(self, path: Path) -> None:
        atomic_write_text(path, "".join(to_json_line(r) for r in self.records))
