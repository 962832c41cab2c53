"""Method registry: `method.name` → Method subclass. Method modules register into it; importing
`lora_lab.methods` imports them all, so code outside the package takes METHODS from there, filled.

Its own module so that the package's modules import it without importing the package that imports them.
"""

from lora_lab.registry import Registry

METHODS: Registry = Registry("method", "method.name")
