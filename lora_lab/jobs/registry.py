"""Recipe registry: a method's kind → the recipe that runs it. Recipe modules register into it;
`lora_lab.jobs.run_job` imports them all before it looks one up.

Its own module so that the package's modules import it without importing the package that imports them.
"""

from lora_lab.registry import Registry

JOBS: Registry = Registry("job kind", "method kind")
