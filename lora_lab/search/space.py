"""A search space written in Hydra's sweep syntax, read as Optuna distributions.

`method.lr=tag(log, interval(1e-4, 1e-2))` is a log-uniform float, `method.r=choice(4, 8, 16)` a categorical,
`method.r=range(4, 33, step=4)` an integer grid (stop excluded, as in Python), `interval(1, 8)` with two integers an
integer range. A plain `key=value` is fixed for every trial. The presets (`conf/hparams_search/`) and the command
line use the same syntax, so any key can join the space from the command line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from lora_lab.config.errors import ConfigError


def _is_int(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _written_as_ints(text: str) -> bool:
    bounds = re.search(r"interval\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*\)", text)
    return bool(bounds) and all(re.fullmatch(r"[+-]?\d+", b) for b in bounds.groups())


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    sweep = override.value()
    log = "log" in getattr(sweep, "tags", set())
    key = override.get_key_element()
    if isinstance(sweep, ChoiceSweep):
        choices = list(override.sweep_iterator())
        bad = [c for c in choices if c is not None and not isinstance(c, bool | int | float | str)]
        if bad:
            raise ConfigError(key, bad[0], "a choice must be a number, a string, a bool or null")
        return CategoricalDistribution(choices)
    if isinstance(sweep, RangeSweep):
        values = list(override.sweep_iterator())  # Hydra's own reading of start/stop/step: the last value is the high
        if not values:
            raise ConfigError(key, override.input_line, "the range is empty")
        if _is_int(sweep.start, sweep.stop, sweep.step):
            return IntDistribution(int(values[0]), int(values[-1]), step=int(sweep.step))
        return FloatDistribution(float(values[0]), float(values[-1]), step=float(sweep.step))
    if isinstance(sweep, IntervalSweep):
        if sweep.start >= sweep.end:
            raise ConfigError(key, f"interval({sweep.start}, {sweep.end})", "the interval is empty")
        if _written_as_ints(override.input_line):  # Hydra keeps interval bounds as floats; the text tells
            return IntDistribution(int(sweep.start), int(sweep.end), log=log)
        return FloatDistribution(float(sweep.start), float(sweep.end), log=log)
    raise ConfigError(key, override.input_line, "not a search dimension",
                      choices=["choice(...)", "range(...)", "interval(a, b)", "tag(log, interval(a, b))"])


def parse_space(overrides: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(search dimensions by key, fixed overrides). A later override of a key replaces an earlier one, so the
    command line refines a preset."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's sampled values as overrides (strings quoted only where Hydra's grammar needs it)."""
    out = []
    for key, value in params.items():
        if value is None:
            text = "null"
        elif isinstance(value, str) and not value.replace("_", "").replace("-", "").replace(".", "").isalnum():
            text = "'" + value.replace("'", "\\'") + "'"
        else:
            text = str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)
        out.append(f"{key}={text}")
    return out
