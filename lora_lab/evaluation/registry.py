"""Evaluator registry: task `eval_mode` → evaluator. Evaluator modules register into it; importing
`lora_lab.evaluation` imports them all, so code outside the package takes EVALUATORS from there, filled.

Its own module so that the package's modules import it without importing the package that imports them.
"""

from lora_lab.registry import Registry

EVALUATORS: Registry = Registry("evaluation mode", "task eval_mode")
