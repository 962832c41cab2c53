"""The keys a user set for one job, and where each came from: what a recipe must not ignore without a word.

A config holds every key (the schemas give each a default), so what the user *chose* is not in it. Two sources
say: Hydra's task overrides of the job (the command line, and in a multirun the job's swept values) and the keys
an `experiment=` preset sets, read from its YAML as written (its `defaults` overrides select groups; its `hydra`
node is Hydra's, its `experiment` node a lookup table of its own). A group selection (`metric=kl`) counts as the
group's key (`metric`). Not job keys: `hydra.*`, deletions (`~key`), and the selections of the preset groups
(`experiment=`, `hparams_search=`), whose keys come through as the two sources above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from lora_lab.config.compose import CONF_DIR

COMMAND_LINE = "command line"
NOT_JOB_KEYS = ("hydra", "experiment", "hparams_search")


@dataclass(frozen=True)
class SetKey:
    key: str  # dotted (`train.lr`); a group selection is the group (`metric`)
    source: str  # COMMAND_LINE, or the preset that set it (`experiment=smoke`)


@dataclass(frozen=True)
class UserKeys:
    keys: tuple[SetKey, ...] = ()
    multirun: bool = False

    @classmethod
    def of(cls, overrides: Sequence[str], experiment: str | None = None, *, multirun: bool = False) -> UserKeys:
        """A key set on the command line and by the preset counts as the command line's."""
        sources = dict.fromkeys(override_keys(overrides), COMMAND_LINE)
        for key in preset_keys(experiment) if experiment else []:
            sources.setdefault(key, f"experiment={experiment}")
        return cls(tuple(SetKey(key, source) for key, source in sources.items()), multirun)

    @classmethod
    def from_hydra(cls, hydra_cfg: Any) -> UserKeys:
        """Of the running Hydra job (`HydraConfig.get()`)."""
        from hydra.types import RunMode

        return cls.of(list(hydra_cfg.overrides.task), hydra_cfg.runtime.choices.get("experiment"),
                      multirun=hydra_cfg.mode == RunMode.MULTIRUN)


def _job_key(key: str) -> str | None:
    key = key.replace("/", ".")  # `hydra/launcher` is Hydra's
    return None if key.split(".", 1)[0] in NOT_JOB_KEYS else key


def override_keys(overrides: Sequence[str]) -> list[str]:
    """The job keys these overrides set (concrete ones: a job's own, not a sweep's)."""
    keys = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = None if override.is_delete() else _job_key(override.key_or_group)
        if key is not None:
            keys.append(key)
    return keys


def preset_keys(name: str) -> list[str]:
    """The job keys an `experiment=<name>` preset sets: its group selections, then every leaf it writes."""
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "experiment" / f"{name}.yaml"), resolve=False)
    keys: list[str] = []
    for entry in raw.get("defaults") or []:  # `override /model: tiny`
        if isinstance(entry, dict):
            keys += [key for group in entry if (key := _job_key(str(group).split()[-1].strip("/"))) is not None]
    for key, value in raw.items():
        if key != "defaults" and _job_key(str(key)) is not None:
            keys += _leaves(str(key), value)
    return keys


def _leaves(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for key, child in value.items() for leaf in _leaves(f"{prefix}.{key}", child)]
    return [prefix]
