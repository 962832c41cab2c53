"""Logger registry: `logger.name` → tracker class. `lora_lab.loggers` registers `none` and imports
`wandb_logger`, which registers `wandb` and imports wandb itself only when a `WandbLogger` is made.

Its own module so that the package's modules import it without importing the package that imports them.
"""

from lora_lab.registry import Registry

LOGGERS: Registry = Registry("logger", "logger.name")
