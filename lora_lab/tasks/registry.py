"""Task registry: `task.name` → Task subclass. Task modules register into it; importing
`lora_lab.tasks` imports them all, so code outside the package takes TASKS from there, filled.

Its own module so that the package's modules import it without importing the package that imports them.
"""

from lora_lab.registry import Registry

TASKS: Registry = Registry("task", "task.name")
