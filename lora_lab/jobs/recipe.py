"""What a recipe declares next to its code: the config keys it reads, and the evaluation stage that is its result.

Why declared: a config holds every key, so a key the user set that the chosen recipe never reads (`train.lr` for
`method=none`) would otherwise pass unnoticed in a run labelled ok. `jobs/ignored_keys.py` compares the user's
keys with the declaration. Why the result stage: a job's `score` is the recipe's result and nothing else — never
the before-training number standing in for a skipped after-training evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Keys that change where a job runs or how its record is kept, never what it measures: every recipe takes them.
NO_EFFECT = ("logger.*", "print_summary", "resume", "overwrite", "hardware.slurm.*")


@dataclass(frozen=True)
class Recipe:
    name: str  # how messages call it: "the evaluate recipe"
    result_stage: str  # the evaluation stage (`after`, `eval`) whose primary metric is the job's score
    reads: tuple[str, ...]  # dotted keys; `section.*` is every key of the section
    never: tuple[str, ...] = ()  # keys inside `reads` that it does not read after all
    result_switch: str | None = None  # the boolean key that turns the result stage off (`eval.after`)

    def covers(self, key: str) -> bool:
        """Whether this recipe reads `key`. A section itself (a group selection, `metric=kl`) and its `name` are
        read when any key of the section is."""
        if _matches(key, NO_EFFECT):
            return True
        if _matches(key, self.never):
            return False
        if _matches(key, self.reads):
            return True
        section, _, rest = key.partition(".")
        return rest in ("", "name") and any(p.startswith(f"{section}.") for p in self.reads)

    def describe(self) -> str:
        """`seed, model.*, ...; not model.lora_targets`: what an error message lists."""
        return ", ".join(self.reads) + (f"; not {', '.join(self.never)}" if self.never else "")

    def unmeasured(self, cfg: DictConfig) -> str:
        """Why the result stage has no number: `not measured (eval.after=false)` when it was switched off."""
        if self.result_switch and OmegaConf.select(cfg, self.result_switch) is False:
            return f"not measured ({self.result_switch}=false)"
        return "not measured"


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    """`p` itself, what lies under it, and for `section.*` the section as a whole."""
    return any(fnmatchcase(key, p) or key.startswith(f"{p}.") or key == p.removesuffix(".*") for p in patterns)


def recipe(name: str, *, result_stage: str, reads: tuple[str, ...], never: tuple[str, ...] = (),
           result_switch: str | None = None) -> Callable[[Any], Any]:
    """Attach the declaration to a recipe function (`fn.recipe`); register it with `JOBS` as before."""
    declared = Recipe(name, result_stage, reads, never, result_switch)

    def attach(fn: Any) -> Any:
        fn.recipe = declared
        return fn

    return attach

