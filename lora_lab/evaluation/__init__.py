"""Evaluators, one per task `eval_mode`: free generation, label log-likelihood choice, perplexity.

The registry itself lives in `registry.py`, so the modules that register into it do not import this package."""

from lora_lab.evaluation import generate_mode  # noqa: F401
from lora_lab.evaluation.registry import EVALUATORS

for _optional in ("choice_mode", "perplexity_mode"):
    try:
        __import__(f"lora_lab.evaluation.{_optional}")
    except ModuleNotFoundError as _err:
        if _err.name != f"lora_lab.evaluation.{_optional}":
            raise

__all__ = ["EVALUATORS"]
