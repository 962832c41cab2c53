"""`method=none`: evaluate the base model (or `adapter_path`) without training."""

from dataclasses import dataclass

from lora_lab.config.schema import choice
from lora_lab.methods.base import Method
from lora_lab.methods.registry import METHODS


@dataclass
class NoneSchema:
    name: str = "none"
    # recorded: rebuild the base the adapter was trained on (4-bit for QLoRA, its dtype), as it was evaluated
    # after training; config: load the base exactly as model.* says (e.g. a QLoRA adapter on the float base)
    adapter_base: str = choice("recorded", "recorded", "config")


@METHODS.option
class NoMethod(Method):
    kind = "eval"
    schema = NoneSchema
