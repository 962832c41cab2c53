"""Fixtures for every test; the helper functions live in tests/helpers/ (`from tests.helpers.<module> import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import lab_helpers  # noqa: F401  (sets the offline environment variables before any test runs)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path
