"""docs/configuration.md, written from the schemas: every key of every group with its type, default and allowed
values — the YAML files no longer list them (they hold only what an option changes), so this is where a reader
finds them. `python -m lora_lab.config.reference > docs/configuration.md`; a test fails when the file is stale."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import typing

import yaml

from lora_lab.config import schema as S
from lora_lab.config.compose import CONF_DIR
from lora_lab.config.store import FIXED_GROUPS, option_schemas

HEADER = """# Configuration reference

Every key `lora-lab` accepts, with its type, default and allowed values, generated from the schemas (the one
place defaults live; see [architecture.md](architecture.md)). Regenerate with
`python -m lora_lab.config.reference > docs/configuration.md`. A YAML option file (`conf/<group>/<name>.yaml`)
changes only the keys it names; `lora-lab <overrides> --cfg job` prints the composed result.
"""


def _type_name(tp: typing.Any) -> str:
    text = tp.__name__ if isinstance(tp, type) else str(tp)
    text = re.sub(r"\btyping\.", "", text).replace(" | None", " or null")
    return text.replace("|", "or")


def _default(field: dataclasses.Field) -> typing.Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return "(required)"


def _allowed(field: dataclasses.Field) -> str:
    choices = field.metadata.get("choices")
    if choices:
        return ", ".join(f"`{c}`" for c in dict.fromkeys(choices))
    domain = field.metadata.get("domain")
    return str(domain) if domain is not None else ""


def rows(schema_cls: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(schema_cls)
    out = []
    for field in dataclasses.fields(schema_cls):
        tp = hints.get(field.name)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += rows(tp, f"{prefix}{field.name}.")
            continue
        default = _default(field)
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        out.append(f"| `{prefix}{field.name}` | {_type_name(tp)} | `{shown}` | {_allowed(field)} |")
    return out


def presets(group: str) -> list[str]:
    """What each option file of a group sets over the schema (its preset), one line per option."""
    lines = []
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        values = {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "defaults"}
        shown = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in values.items() if k != "name")
        nothing = ": its name only" if "name" in values else ": the schema's defaults"
        lines.append(f"* `{group}={path.stem}`" + (f": {shown}" if shown else nothing))
    return lines


def table(title: str, schema_cls: type, prefix: str, group: str | None = None) -> str:
    lines = [f"## {title}", "", "| key | type | default | allowed |", "|---|---|---|---|", *rows(schema_cls, prefix)]
    if group is not None:
        lines += ["", "Options (what each `conf/" + group + "/<option>.yaml` sets):", "", *presets(group)]
    return "\n".join(lines) + "\n"


def render() -> str:
    parts = [HEADER, table("Root keys", S.RootConfig, "")]
    parts += [table(f"`{group}`", cls, f"{group}.", group if (CONF_DIR / group).is_dir() else None)
              for group, cls in FIXED_GROUPS.items()]
    for group, schemas in option_schemas().items():
        for name, cls in schemas.items():
            text = table(f"`{group}={name}`", cls, f"{group}.")
            preset = presets(group)[sorted(schemas).index(name)]
            if not preset.endswith("the schema's defaults"):
                text += "\nPreset in `conf/" + group + f"/{name}.yaml`" + preset.split("`", 2)[2] + "\n"
            parts.append(text)
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
