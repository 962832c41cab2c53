"""`method=none`: evaluate the base model (or `adapter_path`) without training."""

from lora_lab.methods import METHODS
from lora_lab.methods.base import Method


@METHODS.register("none")
class NoMethod(Method):
    name = "none"
    kind = "eval"
