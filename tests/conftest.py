"""Fixtures for every test; the helper functions live in lab_helpers.py (importable by a unique name)."""

from __future__ import annotations

from pathlib import Path

import lab_helpers  # noqa: F401  (sets the offline environment variables before any test runs)
import pytest


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path
