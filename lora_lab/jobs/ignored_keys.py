"""No key without effect: a key the user set that this job does not read is refused or said, never dropped.

A key goes unread for one of three reasons, each declared where the reading happens: the recipe does not read it
(`jobs/recipe.py`, e.g. `train.lr` for `method=none`), the selected task has no such key (validation sets another
task's key aside, `config/validate.py::other_task_keys`), or the method replaces it with a setting of its own
(`Method.replaced_keys`, e.g. `train.lr` while `method.lr` is set). On a single run's command line that is a
mistake: one config error line. In a multirun the key may be meant for the other jobs, and a preset is a bundle
meant for several recipes and tasks: the job runs, logs one warning and records the keys as `ignored_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from lora_lab.config.errors import ConfigError
from lora_lab.config.user_keys import COMMAND_LINE, SetKey, UserKeys
from lora_lab.config.validate import other_task_keys
from lora_lab.jobs.recipe import Recipe

ABSENT = object()


@dataclass(frozen=True)
class Ignored:
    key: str
    value: Any
    source: str
    why: str  # `the evaluate recipe (method=none) does not read it`
    reads: str | None = None  # what it reads instead, for the error line


def ignored_keys(cfg: DictConfig, raw_cfg: DictConfig, user: UserKeys | None, recipe: Recipe) -> list[Ignored]:
    """The user's keys the job of `recipe` does not read (`cfg` validated, `raw_cfg` as composed). Raises
    `ConfigError` for the first one a single run's command line set. Without the user's keys (a job started
    outside the Hydra app) the other tasks' keys in the config are the ones known to be set, and are set aside."""
    from lora_lab.methods import METHODS  # lazy: imports peft

    if user is None:
        user = UserKeys(tuple(SetKey(key, "config") for key in other_task_keys(raw_cfg)))
    replaced = METHODS.get(cfg.method.name).replaced_keys(cfg)
    found = []
    for chosen in user.keys:
        why, reads = unread(chosen.key, cfg, recipe, replaced)
        if why is None:
            continue
        ignored = Ignored(chosen.key, value_of(raw_cfg, chosen.key), chosen.source, why, reads)
        if chosen.source == COMMAND_LINE and not user.multirun:
            raise ConfigError(ignored.key, ignored.value, why + (f" (it reads: {reads})" if reads else ""))
        found.append(ignored)
    return found


def unread(key: str, cfg: DictConfig, recipe: Recipe, replaced: dict[str, str]) -> tuple[str | None, str | None]:
    """(why this job does not read `key`, what it reads instead), or (None, None) when it does."""
    if not recipe.covers(key):
        return f"the {recipe.name} recipe (method={cfg.method.name}) does not read it", recipe.describe()
    if key in replaced:
        return replaced[key], None
    if OmegaConf.select(cfg, key, default=ABSENT) is ABSENT:  # another option's key, set aside by validation
        section = cfg.get(key.split(".", 1)[0])
        if isinstance(section, DictConfig) and "name" in section:
            return (f"{key.split('.', 1)[0]}={section.name} does not read it",
                    ", ".join(str(k) for k in section.keys()))
        return "no such key in the validated config", None
    return None, None


def value_of(raw_cfg: DictConfig, key: str) -> Any:
    """The value as the user gave it; a group selection by its option's name."""
    value = OmegaConf.select(raw_cfg, key, default=None, throw_on_resolution_failure=False)
    if isinstance(value, DictConfig):
        return value.get("name", OmegaConf.to_container(value, resolve=False))
    return OmegaConf.to_container(value, resolve=False) if isinstance(value, ListConfig) else value


def warning_line(ignored: list[Ignored]) -> str:
    """One line per job: `ignored for this job: train.lr (the evaluate recipe (method=none) does not read it)`."""
    return "ignored for this job: " + "; ".join(f"{i.key} ({i.why})" for i in ignored)
