"""Command-line overrides that Hydra cannot compose, found before Hydra runs.

Hydra reports a wrong type (`train.batch_size=2.5`), an unknown group option (`metric=foo`), an unknown key or an
unparsable override in several lines and exits 1. `check_overrides` composes the same overrides first (every
value of a sweep, each with the first value of the others) and turns the first failure into one `ConfigError`
naming the key, the value and, where there is a list, the choices.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from omegaconf import OmegaConf

from lora_lab.config.compose import CONF_DIR, compose_config
from lora_lab.config.errors import ConfigError

# Hydra flags after which the command is not a run of the root config (help, printing, another config): left alone
OTHER_MODES = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc",
               "--version", "--resolve", "-p", "--package", "--config-path", "-cp", "--config-name", "-cn",
               "--config-dir", "-cd", "--experimental-rerun"}
MULTIRUN_FLAGS = {"-m", "--multirun"}
MAX_COMPOSITIONS = 200  # a sweep of more values is checked on its first 200 (key, value) pairs


def run_overrides(argv: Sequence[str]) -> list[str] | None:
    """The overrides of a plain run or multirun; None when Hydra is asked for anything else."""
    overrides = []
    for arg in argv:
        if arg.split("=", 1)[0] in OTHER_MODES:
            return None
        if arg in MULTIRUN_FLAGS:
            continue
        if arg.startswith("-"):
            return None
        overrides.append(arg)
    return overrides


def job_override_sets(overrides: list[str]) -> list[list[str]]:
    """Job 0's overrides (every sweep at its first value), then one set per other swept value."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:  # noqa: BLE001 — Hydra's parser raises its own exception types
        bad = next((o for o in overrides if _unparsable(o)), overrides[0] if overrides else "")
        raise ConfigError(*_split(bad), f"cannot parse this override ({_first_line(err)})") from None
    axes = []
    for override in parsed:
        key = override.get_key_element()
        if override.is_sweep_override() and isinstance(override.value(), IntervalSweep):
            # a search dimension (hparams_search): not enumerable; its two ends stand for it
            sweep = override.value()
            values = [f"{key}={bound}" for bound in (sweep.start, sweep.end)]
        elif override.is_sweep_override():
            values = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            values = [override.input_line]
        axes.append(values or [override.input_line])
    first = [values[0] for values in axes]
    sets = [first]
    for position, values in enumerate(axes):
        for value in values[1:]:
            sets.append(first[:position] + [value] + first[position + 1:])
    return sets[:MAX_COMPOSITIONS]


def check_overrides(argv: Sequence[str]) -> None:
    overrides = run_overrides(argv)
    if not overrides:
        return
    for job in job_override_sets(overrides):
        try:
            compose_config(job)
        except Exception as err:  # noqa: BLE001 — whatever Hydra/OmegaConf raise, the user gets one line
            raise composition_error(err, job) from None


def composition_error(err: Exception, overrides: list[str]) -> ConfigError:
    """The override at fault, what is wrong with it, and the choices where there is a list."""
    text = str(err)
    missing = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
    if missing:  # an unknown option of a config group
        group, option = missing.groups()
        listed = re.findall(r"^\t(\S+)$", text.split("Available options", 1)[-1], flags=re.M)
        return ConfigError(group, option, "no such option", choices=sorted(listed) or group_options(group))
    merging = re.search(r"(?:Error merging override|Could not override '?)\s*([^\s']+)", text)
    named = merging.group(1) if merging else None
    override = next((o for o in overrides if named in (o, _split(o)[0])) if named else
                    (o for o in overrides if _split(o)[0] in text), named)
    key, value = _split(override or "")
    cause = err.__cause__ or err
    reason = _first_line(cause)
    if re.search(r"Key '([^']+)' (?:not in|is not in)", f"{text}\n{cause}"):
        return ConfigError(key, value, "unknown key", choices=sibling_keys(key, overrides))
    return ConfigError(key or "override", value if override else text.splitlines()[0], reason)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def sibling_keys(key: str, overrides: list[str]) -> list[str] | None:
    """The keys that do exist beside a mistyped one (from the config composed without it)."""
    parent = key.rsplit(".", 1)[0] if "." in key else None
    if parent is None:
        return None
    try:
        cfg = compose_config([o for o in overrides if not o.lstrip("+~").startswith(key)])
        node = OmegaConf.select(cfg, parent)
        return sorted(str(k) for k in node.keys()) if node is not None and hasattr(node, "keys") else None
    except Exception:  # noqa: BLE001 — choices are a courtesy; the line stands without them
        return None


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _unparsable(override: str) -> bool:
    try:
        OverridesParser.create().parse_overrides([override])
        return False
    except Exception:  # noqa: BLE001
        return True


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
