"""Evaluators, one per task `eval_mode`: free generation, label log-likelihood choice, perplexity."""

from lora_lab.registry import Registry

EVALUATORS: Registry = Registry("evaluation mode", "task eval_mode")

from lora_lab.evaluation import generate_mode  # noqa: E402,F401

for _optional in ("choice_mode", "perplexity_mode"):
    try:
        __import__(f"lora_lab.evaluation.{_optional}")
    except ModuleNotFoundError as _err:
        if _err.name != f"lora_lab.evaluation.{_optional}":
            raise
