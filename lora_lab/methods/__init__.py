"""Method registry: `method.name` → Method subclass. Importing a method module registers it.

The registry itself lives in `registry.py`, so the modules that register into it do not import this package."""

from lora_lab.methods import lora, meta, none  # noqa: F401  (registration side effects)
from lora_lab.methods.registry import METHODS

for _optional in ("qlora", "galore", "sparse_lora", "rosa", "hira"):
    try:
        __import__(f"lora_lab.methods.{_optional}")
    except ModuleNotFoundError as _err:  # a method module not written yet
        if _err.name != f"lora_lab.methods.{_optional}":
            raise

__all__ = ["METHODS"]
