"""Imported once by the fault tier's fork server: the project and its recipes' libraries (peft, transformers), so
every forked job starts warm. Importing starts no thread, so forking from this process is safe."""

from lora_lab import cli  # noqa: F401
from lora_lab.jobs import _register_recipes

_register_recipes()
