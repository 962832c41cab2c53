"""The install is locked: requirements.lock pins every dependency pyproject.toml names (every extra) at a version
inside pyproject's range, and the environment the tests run in is that lock, so a new release of any library
changes nothing until the lock is refreshed on purpose (launch/lock.sh, after launch/check_latest.sh)."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "launch"))
from uncapped_requirements import locked, requirements, uncapped  # noqa: E402


def test_every_dependency_is_pinned_inside_its_range() -> None:
    pins = locked(ROOT / "requirements.lock")
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run launch/lock.sh"
        version = Version(pins[name])
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req.specifier}"


def test_every_dependency_has_an_upper_bound() -> None:
    """A range without a ceiling lets the next release in, unseen, for anyone installing from pyproject."""
    uncapped_names = [r.name for r in requirements() if not any(s.operator in ("<", "<=") for s in r.specifier)]
    assert not uncapped_names


def test_uncapped_requirements_drop_only_the_ceilings() -> None:
    req = Requirement("lm-eval[hf]>=0.4.13,<0.5")
    assert uncapped(req) == "lm-eval[hf]>=0.4.13"


@pytest.mark.skipif(os.environ.get("LORA_LAB_UNLOCKED") == "1", reason="launch/check_latest.sh: newest on purpose")
def test_the_test_environment_is_the_lock() -> None:
    pins = locked(ROOT / "requirements.lock")
    differ = []
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment did not install (bench)
        if Version(installed).public != Version(version).public:
            differ.append(f"{name}: installed {installed}, locked {version}")
    assert not differ, "not the locked environment (bash launch/setup.sh):\n" + "\n".join(differ)
