"""Task registry: `task.name` → Task subclass. Importing a task module registers it.

The registry itself lives in `registry.py`, so the modules that register into it do not import this package."""

from lora_lab.tasks import arith, gsm8k  # noqa: F401  (registration side effects)
from lora_lab.tasks.registry import TASKS

for _optional in ("news_summary", "sst2", "imdb", "wikitext2", "sni", "agnews"):
    try:
        __import__(f"lora_lab.tasks.{_optional}")
    except ModuleNotFoundError as _err:  # a task module not written yet
        if _err.name != f"lora_lab.tasks.{_optional}":
            raise

__all__ = ["TASKS"]
