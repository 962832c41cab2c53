"""Method registry: `method.name` → Method subclass. Importing a method module registers it."""

from lora_lab.registry import Registry

METHODS: Registry = Registry("method", "method.name")

from lora_lab.methods import lora, meta, none  # noqa: E402,F401  (registration side effects)

for _optional in ("qlora", "galore", "sparse_lora", "rosa", "hira"):
    try:
        __import__(f"lora_lab.methods.{_optional}")
    except ModuleNotFoundError as _err:  # a method module not written yet
        if _err.name != f"lora_lab.methods.{_optional}":
            raise
