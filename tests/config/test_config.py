"""The config tree: every option composes and validates; bad input fails with one clear line."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf, open_dict

from lora_lab.config.compose import CONF_DIR
from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import validate_config
from tests.helpers.lab_helpers import compose_cfg, tiny_cfg

GROUPS = ["model", "task", "method", "metric", "hardware", "logger"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates_with_the_other_defaults(group: str, option: str) -> None:
    # an encoder (sequence-classification head) only pairs with classification tasks
    encoder = group == "model" and OmegaConf.load(CONF_DIR / group / f"{option}.yaml").get("kind") != "causal_lm"
    extra = ["task=sst2"] if encoder else []
    extra += ["method.bank_dir=some/bank"] if (group, option) == ("method", "meta") else []
    cfg = validate_config(compose_cfg([f"{group}={option}", *extra]))
    assert cfg[group].name == option or group == "model" or cfg[group].name


@pytest.mark.parametrize("overrides,message", [
    (["method=meta"], r"method.bank_dir=None: meta-generation needs a bank .* experiment=meta_minibank"),
    (["method=meta", "method.bank_dir=b", "method.representation=embedding"],
     r"metric='js': not defined for method.representation=embedding .*\(choices: l2, cosine\)"),
])
def test_meta_without_a_bank_or_with_a_metric_its_representation_lacks_is_one_line(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(compose_cfg(overrides))


def test_every_experiment_preset_composes() -> None:
    for preset in options("experiment"):
        cfg = compose_cfg([f"experiment={preset}"])
        assert "method" in cfg and "task" in cfg


def test_groups_cover_the_documented_options() -> None:
    assert {"tiny", "smollm2_135m", "mistral_7b_instruct"} <= set(options("model"))
    assert {"lora", "none", "meta"} <= set(options("method"))
    assert {"wd", "kl", "js", "mmd"} <= set(options("metric"))
    assert {"arith", "gsm8k"} <= set(options("task"))


def test_unknown_group_option_lists_the_choices() -> None:
    with pytest.raises(MissingConfigException) as err:
        compose_cfg(["method=lorra"])
    assert "lora" in str(err.value) and "lorra" in str(err.value)


def test_override_of_a_missing_key_is_refused_by_hydra_naming_it() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["method.rnak=4"])
    assert "method.rnak" in str(err.value)


def test_added_unknown_key_names_key_and_allowed_keys() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg("+method.rnak=4"))
    message = str(err.value)
    assert "method.rnak" in message and "unknown key" in message and "r," in message and "alpha" in message


def test_wrong_type_fails_at_composition_naming_the_key() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        tiny_cfg("train.batch_size=lots")
    assert "train.batch_size" in str(err.value.__cause__) and "Integer" in str(err.value.__cause__)


def test_typo_in_a_schema_group_names_the_key_and_schema() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        tiny_cfg("model.lcal_dir=/x")
    assert "lcal_dir" in str(err.value.__cause__) and "ModelConfig" in str(err.value.__cause__)


def test_value_outside_choices_lists_them() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg("train.scheduler=zigzag"))
    assert "zigzag" in str(err.value) and "cosine" in str(err.value)


def test_method_rules_are_checked_before_loading() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg("method.r=0"))
    assert "method.r" in str(err.value)


def test_unknown_task_name_in_a_hand_written_config() -> None:
    cfg = tiny_cfg()
    with open_dict(cfg):
        cfg.task.name = "nope"
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "task.name" in str(err.value) and "arith" in str(err.value)


def test_validated_config_is_plain_and_read_only() -> None:
    cfg = validate_config(tiny_cfg())
    assert cfg.train.answer_only_logits is True
    from omegaconf.errors import ReadonlyConfigError

    with pytest.raises(ReadonlyConfigError):
        cfg.train.lr = 1.0


@pytest.mark.parametrize("task", options("task"))
def test_every_task_lists_the_common_keys(task: str) -> None:
    """A multirun composes its non-swept overrides against the DEFAULT task first, so `-m task=a,b
    task.train_limit=N` only works when every task (the default included) lists the common keys."""
    cfg = validate_config(compose_cfg([f"task={task}", "task.train_limit=3", "task.eval_limit=2", "task.source=x"]))
    assert cfg.task.train_limit == 3 and cfg.task.eval_limit == 2 and cfg.task.source == "x"
