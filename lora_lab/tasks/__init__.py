"""Task registry: `task.name` → Task subclass. Importing a task module registers it."""

from lora_lab.registry import Registry

TASKS: Registry = Registry("task", "task.name")

from lora_lab.tasks import arith, gsm8k  # noqa: E402,F401  (registration side effects)

for _optional in ("news_summary", "sst2", "imdb", "wikitext2", "sni", "agnews"):
    try:
        __import__(f"lora_lab.tasks.{_optional}")
    except ModuleNotFoundError as _err:  # a task module not written yet
        if _err.name != f"lora_lab.tasks.{_optional}":
            raise
