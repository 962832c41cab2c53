"""What a task is: where its examples come from, how one becomes a prompt and a target, how it is scored.

Tasks return plain `Example`s; turning them into token ids (chat template, label masking) is shared code in
`lora_lab.training.tokenize`, so every task is formatted and masked the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import positive
from lora_lab.models.kinds import KINDS, kind_of


@dataclass
class Example:
    prompt: str  # the user turn (before any chat template)
    target: str  # the text the model is trained to produce
    reference: Any = None  # what scoring compares against; defaults to `target`
    system: str | None = None
    choices: list[str] | None = None  # label words for log-likelihood classification
    label: int | None = None  # index into `choices` (or the class id for encoder heads)
    text: str | None = None  # the bare input without instructions: what an encoder classifier reads
    language_modeling: bool = False  # raw text: no template or prompt, loss on every token of `target`
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.reference is None:
            self.reference = self.target


@dataclass
class TaskSchema:
    """Keys every task understands; task schemas subclass this."""

    name: str = "task"
    data_dir: str | None = None  # offline: read local files instead of the hub
    hub_id: str | None = None
    hub_config: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    train_limit: int | None = positive(None)
    eval_limit: int | None = positive(None)
    max_new_tokens: int = positive(32)
    system_prompt: str | None = None
    seed: int = 0  # fixes the deterministic subsets chosen by the limits
    source: str | None = None  # the source dataset; meta-generation's leave-source-out excludes its siblings


class Task:
    name: ClassVar[str]
    schema: ClassVar[type] = TaskSchema
    eval_mode: ClassVar[str] = "generate"  # generate | choice | perplexity — picks the evaluator
    classification: ClassVar[bool] = False  # True: a sequence-classification model (encoder head) can run it
    primary_metric: ClassVar[str] = "accuracy"
    higher_is_better: ClassVar[bool] = True  # of the primary metric: a search maximises it (perplexity: minimises)
    stop_strings: ClassVar[list[str]] = []

    def __init__(self, tcfg: DictConfig):
        self.cfg = tcfg

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        kind = kind_of(cfg)
        able = [k for k in KINDS.names() if cls.eval_mode in KINDS.get(k).eval_modes
                and (cls.classification or not KINDS.get(k).has_head)]
        if kind.name not in able:
            why = "which needs a causal LM" if kind.has_head else f"which a {kind.name} model cannot run"
            raise ConfigError("model.kind", cfg.model.kind, f"task {cls.name!r} is scored by {cls.eval_mode}, {why}",
                              choices=able)

    # ----- data -----
    def load_split(self, split: str) -> list[Example]:
        raise NotImplementedError

    def train_examples(self) -> list[Example]:
        return self._limited(self.load_split(self.cfg.train_split), self.cfg.train_limit, salt=1)

    def eval_examples(self) -> list[Example]:
        return self._limited(self.load_split(self.cfg.eval_split), self.cfg.eval_limit, salt=2)

    def _limited(self, examples: list[Example], limit: int | None, salt: int) -> list[Example]:
        """A deterministic subset: the same seed and limit always pick the same examples, in order."""
        if limit is None or limit >= len(examples):
            return examples
        picked = sorted(random.Random(self.cfg.seed * 1000 + salt).sample(range(len(examples)), limit))
        return [examples[i] for i in picked]

    # ----- scoring -----
    def score(self, prediction: str, example: Example) -> dict[str, float]:
        raise NotImplementedError

    def aggregate(self, scores: list[dict[str, float]]) -> dict[str, float]:
        if not scores:
            return {}
        return {key: sum(s[key] for s in scores) / len(scores) for key in scores[0]}
