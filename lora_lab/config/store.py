"""The schemas in Hydra's ConfigStore: the one place every default lives.

Each dataclass schema (config/schema.py for the fixed groups, each method's and task's own next to its code)
is stored under `schema/`, and the YAML under conf/ lays its values over them: `conf/config.yaml` lists the
fixed ones, and every `conf/method/<m>.yaml` / `conf/task/<t>.yaml` starts from `/schema/<group>/<name>`. A
YAML file therefore holds only what its option sets differently (a preset), every key exists without `+`, and
`tests/config/test_defaults.py` fails if a YAML file restates a default or names a key its schema lacks.
"""

from __future__ import annotations

import functools

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from lora_lab.config import schema as S

FIXED_GROUPS: dict[str, type] = {
    "model": S.ModelConfig, "metric": S.MetricConfig, "hardware": S.HardwareConfig, "logger": S.LoggerConfig,
    "train": S.TrainConfig, "eval": S.EvalConfig,
}


def option_schemas() -> dict[str, dict[str, type]]:
    """group → option name → schema, for the groups whose keys depend on the option (read from the registries,
    so a registered method or task is a config option with no further step)."""
    # upward on purpose: the schemas live next to the methods/tasks (docs/architecture.md)
    from lora_lab.methods import METHODS
    from lora_lab.tasks import TASKS

    return {"method": {n: METHODS.get(n).schema for n in METHODS.names()},
            "task": {n: TASKS.get(n).schema for n in TASKS.names()}}


def defaults_of(schema_cls: type) -> dict:
    """A schema's defaults as plain values (what an option starts from)."""
    return OmegaConf.to_container(OmegaConf.structured(schema_cls))


@functools.cache
def register_schemas() -> None:
    """Once per process (every compose calls it; the registries are filled at import and do not change)."""
    store = ConfigStore.instance()
    # the root keys as plain values (a typed root would refuse the groups merged beside them)
    store.store(group="schema", name="root", node=OmegaConf.create(defaults_of(S.RootConfig)), package="_global_")
    for package, node in FIXED_GROUPS.items():
        store.store(group="schema", name=package, node=node, package=package)
    # Task keys differ from task to task, and a multirun composes its overrides against the default task first:
    # the task node is an open mapping, so `task.<key>=v` composes for any task (no `++`), and validation checks
    # the keys against the task schemas (validate.py: another task's key is set aside, a key of none is refused).
    open_task = OmegaConf.create({})
    OmegaConf.set_struct(open_task, False)
    store.store(group="schema", name="task", node=open_task, package="task")
    for group, schemas in option_schemas().items():
        for name, schema_cls in schemas.items():
            if group == "task":  # plain values: the node stays open (see above); validation types it
                node = OmegaConf.create(defaults_of(schema_cls))
                OmegaConf.set_struct(node, False)
            else:
                node = schema_cls
            store.store(group=f"schema/{group}", name=name, node=node)
