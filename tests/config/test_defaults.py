"""Every default lives in one place — the dataclass schemas — and the YAML under conf/ only sets what differs.

The test fails when a YAML file restates a schema default (two places that could drift), names a key its
schema lacks, or when an option's file name and its registered name disagree; and it checks that the
config `lora-lab` composes is exactly the schemas with the YAML presets laid over them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from lora_lab.config.compose import CONF_DIR, compose_config
from lora_lab.config.store import FIXED_GROUPS, defaults_of, option_schemas
from lora_lab.config.validate import validate_config

OPTION_GROUPS = option_schemas()


def option_files(group: str) -> list[Path]:
    return sorted((CONF_DIR / group).glob("*.yaml"))


def schema_for(group: str, path: Path) -> type:
    return FIXED_GROUPS[group] if group in FIXED_GROUPS else OPTION_GROUPS[group][path.stem]


def restated(values: dict, defaults: dict, prefix: str) -> list[str]:
    """Keys of `values` whose value equals the default (nested mappings compared key by key)."""
    found = []
    for key, value in values.items():
        if key in ("defaults", "name") or (isinstance(value, str) and "${" in value):
            continue
        default = defaults.get(key)
        if isinstance(value, dict) and isinstance(default, dict):
            found += restated(value, default, f"{prefix}{key}.")
        elif key in defaults and value == default:
            found.append(f"{prefix}{key}={value!r}")
    return found


def unknown(values: dict, defaults: dict, prefix: str, open_keys: tuple[str, ...] = ()) -> list[str]:
    found = []
    for key, value in values.items():
        if key == "defaults" or key in open_keys:
            continue
        if key not in defaults:
            found.append(f"{prefix}{key}")
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key]:
            found += unknown(value, defaults[key], f"{prefix}{key}.")
    return found


GROUP_FILES = [(group, path) for group in [*FIXED_GROUPS, *OPTION_GROUPS] for path in option_files(group)]


@pytest.mark.parametrize(("group", "path"), GROUP_FILES, ids=[f"{g}/{p.stem}" for g, p in GROUP_FILES])
def test_an_option_file_sets_only_what_differs_from_its_schema(group: str, path: Path) -> None:
    values = yaml.safe_load(path.read_text()) or {}
    defaults = defaults_of(schema_for(group, path))
    assert restated(values, defaults, f"{group}.") == [], f"{path.name} restates schema defaults: delete them"
    # free-form mappings of a schema (a model's tiny-config, its target map) take any key
    assert unknown(values, defaults, f"{group}.", open_keys=("tiny", "lora_targets")) == []


@pytest.mark.parametrize("group", sorted(OPTION_GROUPS))
def test_every_registered_option_has_a_file_of_its_name_and_back(group: str) -> None:
    assert sorted(p.stem for p in option_files(group)) == sorted(OPTION_GROUPS[group])
    for path in option_files(group):
        assert f"/schema/{group}/{path.stem}@_here_" in path.read_text(), f"{path.name} must start from its schema"


@pytest.mark.parametrize("group", [g for g in FIXED_GROUPS if g not in ("train", "eval")])
def test_fixed_group_options_are_named_after_their_file(group: str) -> None:
    for path in option_files(group):
        assert (yaml.safe_load(path.read_text()) or {}).get("name") == path.stem, path


def test_the_root_config_restates_no_default() -> None:
    root = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    for section in ("train", "eval"):
        if section in root:
            assert restated(root[section], defaults_of(FIXED_GROUPS[section]), f"{section}.") == []
    assert [k for k in root if k not in ("defaults", "hydra", "train", "eval")] == [], "root keys: schema.RootConfig"


CASES = [("method", m) for m in sorted(OPTION_GROUPS["method"])] + [("task", t) for t in sorted(OPTION_GROUPS["task"])]


@pytest.mark.parametrize(("group", "name"), CASES, ids=[f"{g}={n}" for g, n in CASES])
def test_the_composed_option_is_its_schema_with_the_preset_over_it(group: str, name: str) -> None:
    """What a user gets on the CLI equals what the schema says, except where the YAML preset says otherwise —
    the same on every path (composition, validation, the Python API's schema)."""
    overrides = [f"{group}={name}"]
    composed = OmegaConf.to_container(compose_config(overrides)[group], resolve=True)
    preset = yaml.safe_load((CONF_DIR / group / f"{name}.yaml").read_text()) or {}
    expected = {**defaults_of(OPTION_GROUPS[group][name])}
    for key, value in preset.items():
        if key != "defaults":
            expected[key] = composed[key] if isinstance(value, str) and "${" in value else value
    assert composed == expected
    if name != "meta":  # meta's check looks for a bank on disk
        validated = validate_config(compose_config(overrides))
        assert OmegaConf.to_container(validated[group]) == expected


def test_train_and_eval_defaults_are_the_schema_values() -> None:
    cfg = compose_config([])
    for section in ("train", "eval"):
        composed = OmegaConf.to_container(cfg[section], resolve=True)
        defaults = defaults_of(FIXED_GROUPS[section])
        defaults.pop("seed", None), composed.pop("seed", None)  # train.seed follows ${seed}
        assert composed == defaults


def test_the_configuration_reference_is_current() -> None:
    from lora_lab.config.reference import render

    written = (CONF_DIR.parent / "docs" / "configuration.md").read_text()
    assert written == render(), "regenerate: python -m lora_lab.config.reference > docs/configuration.md"


def test_model_kind_choices_are_the_registered_kinds() -> None:
    import dataclasses

    from lora_lab.config.schema import ModelConfig
    from lora_lab.models.kinds import KINDS

    kind = next(f for f in dataclasses.fields(ModelConfig) if f.name == "kind")
    assert sorted(set(kind.metadata["choices"])) == KINDS.names()
