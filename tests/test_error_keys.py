"""Every config key an error names is a key the user can set: it exists in the composed config.

`ConfigError(key, value, problem)` prints `key=value: problem`, and a registry prints its `key` with the
choices; a key that does not exist (`meta.combine.top_k` for `method.top_k`) sends the user looking for
nothing. This collects every string literal passed as that key anywhere in lora_lab/ (with `ast`) and looks
each one up in the configs `lora-lab --cfg job` prints, one per option of every config group.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from omegaconf import OmegaConf

from lora_lab.config.compose import CONF_DIR, compose_config

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lora_lab"
GROUPS = ("method", "task", "model", "metric", "hardware", "logger")

# Subjects that are not config keys, and why. CLI flags (`--metric`) are allowed by their leading `--`.
NOT_CONFIG_KEYS = {
    "adapter": "positional argument of lora-lab-merge / lora-lab-generate",
    "out": "positional argument of lora-lab-merge",
    "bank_dir": "positional argument of python -m lora_lab.meta.from_runs",
    "bank member dataset.name": "a field of a bank member in bank.json",
    "fewshot examples": "the labelled examples given to the few-shot coefficient search",
    "mixture form": "a row form of meta.mixture.BankMixture (delta, factors, arrow), chosen by the study's code",
    "hydra.run.dir": "Hydra's own run dir key (not in the job config)",
    "hydra.sweep.dir": "Hydra's own sweep dir key (not in the job config)",
    "source": "positional argument of lora-lab-export (an adapter or merged model folder)",
    "model_type": "a field of the exported model's config.json (lora-lab-export)",
    "architectures": "a field of the exported model's config.json (lora-lab-export)",
    "rope_parameters.rope_type": "a field of the exported model's config.json (lora-lab-export)",
    "tokenizer.pre_tokenizer": "a field of the exported model's tokenizer.json (lora-lab-export)",
    "tokenizer.model": "a field of the exported model's tokenizer.json (lora-lab-export)",
    "tensor": "a weight of the exported model (lora-lab-export)",
    "hydra.sweeper.direction": "a key of the Optuna sweeper (hydra/sweeper=optuna), in Hydra's config, not the job's",
    "hydra.sweeper.sampler": "a key of the Optuna sweeper (hydra/sweeper=optuna), in Hydra's config, not the job's",
    "hydra.sweeper.confirm_top": "a key of the Optuna sweeper (hydra/sweeper=optuna), in Hydra's config, not the job's",
    "hydra.sweeper.final_seeds": "a key of the Optuna sweeper (hydra/sweeper=optuna), in Hydra's config, not the job's",
    "hparams_search": "the config group that picks a search preset (conf/hparams_search/); no key of its own",
    "mmd_bandwidths": "argument of meta.distances.squared_mmd (MMD_BANDWIDTHS), not configurable",
    "output_dtype": "argument of meta.combine.predict_adapter, not configurable",
    "tokenizer vocab_size": "the model tokenizer's size, derived, not configurable",
    "task eval_mode": "a Task class's eval_mode attribute (evaluation registry), set in code",
    "method kind": "a Method class's kind attribute (recipe registry), set in code",
}


# A dotted key of a config group in any message or docstring (`method.top_k`, `metric.kl_epsilon=...`); not
# inside a longer name (`cfg.task.name`, a path) and not a file name (`train.tsv`, `model.safetensors`).
DOTTED_KEY = re.compile(rf"(?<![\w./-])((?:{'|'.join((*GROUPS, 'train', 'eval'))})\.[a-z_]+(?:\.[a-z_]+)*)")
FILE_SUFFIXES = {"json", "jsonl", "log", "pt", "safetensors", "tsv", "txt", "yaml"}


def _is_config_error(call: ast.Call) -> bool:
    func = call.func
    return (isinstance(func, ast.Name) and func.id == "ConfigError") or (
        isinstance(func, ast.Attribute) and func.attr == "ConfigError")


def _is_registry(call: ast.Call) -> bool:
    func = call.func
    return isinstance(func, ast.Name) and func.id == "Registry"


def named_keys() -> dict[str, list[str]]:
    """Key literal -> where it is used (`path:line`): ConfigError's first argument, Registry's second."""
    keys: dict[str, list[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            if _is_config_error(node):
                position, keyword = 0, "key"
            elif _is_registry(node):
                position, keyword = 1, "key"
            else:
                continue
            arg = node.args[position] if len(node.args) > position else next(
                (k.value for k in node.keywords if k.arg == keyword), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                where = f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"
                keys.setdefault(arg.value, []).append(where)
    return keys


def keys_in_text() -> dict[str, list[str]]:
    """Dotted config keys named in the text of string literals (messages, docstrings) -> `path:line`."""
    keys: dict[str, list[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in DOTTED_KEY.finditer(node.value):
                    key = match.group(1)
                    if key.rpartition(".")[2] not in FILE_SUFFIXES:
                        where = f"{path.relative_to(PACKAGE_DIR.parent)}:{node.lineno}"
                        keys.setdefault(key, []).append(where)
    return keys


@cache
def composed_configs() -> tuple[dict, ...]:
    """The default config, and the config with each option of each group selected (unresolved)."""
    overrides = [[]] + [[f"{group}={option.stem}"] for group in GROUPS
                        for option in sorted((CONF_DIR / group).glob("*.yaml"))]
    return tuple(OmegaConf.to_container(compose_config(o), resolve=False) for o in overrides)


def _exists(config: dict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def key_exists(key: str) -> bool:
    """`a.b` exists in some composed config; `task.train_split/eval_split` names two keys of `task`."""
    first, *others = key.split("/")
    prefix = first.rpartition(".")[0]
    wanted = [first, *(f"{prefix}.{other}" if prefix else other for other in others)]
    return all(any(_exists(config, k) for config in composed_configs()) for k in wanted)


def test_the_collector_finds_config_errors_and_registry_keys() -> None:
    keys = named_keys()
    assert "method.top_k" in keys  # meta/combine.py
    assert "method.name" in keys  # the methods registry
    assert any("--" in key for key in keys)


def test_the_lookup_tells_real_keys_from_made_up_ones() -> None:
    assert key_exists("method.top_k") and key_exists("metric") and key_exists("task.train_split/eval_split")
    assert not key_exists("meta.combine.top_k") and not key_exists("method.rnak")


def test_every_key_named_in_an_error_exists_in_the_composed_config() -> None:
    unknown = {key: where for key, where in named_keys().items()
               if not key.startswith("--") and key not in NOT_CONFIG_KEYS and not key_exists(key)}
    assert unknown == {}, f"error keys that no composed config has: {unknown}"


def test_the_text_collector_finds_keys_in_messages_but_not_file_or_attribute_names() -> None:
    keys = keys_in_text()
    assert "metric.kl_epsilon" in keys  # in meta/coefficients.py a ValueError names it in its message
    assert "train.tsv" not in keys and "model.safetensors" not in keys
    assert DOTTED_KEY.findall("set meta.combine.top_k or cfg.method.top_k") == []  # not a group; an attribute
    assert DOTTED_KEY.findall("`method.rnak=4`") == ["method.rnak"]


def test_every_key_named_in_a_message_or_docstring_exists_in_the_composed_config() -> None:
    unknown = {key: where for key, where in keys_in_text().items() if not key_exists(key)}
    assert unknown == {}, f"keys named in messages or docstrings that no composed config has: {unknown}"


def test_the_allowlist_holds_no_real_keys_and_nothing_stale() -> None:
    keys = named_keys()
    assert [k for k in NOT_CONFIG_KEYS if k not in keys] == []
    assert [k for k in NOT_CONFIG_KEYS if key_exists(k)] == []
