"""Fixtures for every test; the helper functions live in tests/helpers/ (`from tests.helpers.<module> import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import lab_helpers  # noqa: F401  (sets the offline environment variables before any test runs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.gpu` tests are skipped, with the reason, on a machine without a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu: no CUDA device on this machine")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path
