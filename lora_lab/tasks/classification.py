"""Shared shape of the text-classification tasks (sst2, imdb, agnews).

One example serves both model kinds: a causal LM answers with a label word (trained on it as the target,
evaluated by comparing the label words' log-likelihoods — `eval_mode=choice`), an encoder reads the bare
text and predicts the class id with its head. Scored by accuracy and macro-F1 (F1 per class, averaged, so a
model that always answers the majority class does not look good on a skewed set).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.schema import positive, ranged
from lora_lab.models.kinds import kind_of
from lora_lab.tasks.base import Example, Task, TaskSchema
from lora_lab.tasks.sources import load_split_records


@dataclass
class ClassificationSchema(TaskSchema):
    num_labels: int = ranged(2, ge=2)  # also sizes an encoder's head (model.num_labels follows it)
    label_words: list[str] = field(default_factory=list)  # index = class id: what a causal LM answers
    instruction: str = ""
    max_new_tokens: int = 4  # only used if the task is run with free generation
    choice_eos: bool = True  # score label + EOS, as trained: a label that prefixes another gains nothing
    max_input_chars: int | None = positive(None)  # cut very long inputs (characters) before prompting


@dataclass
class SentimentSchema(ClassificationSchema):
    """Binary review sentiment (sst2, imdb): the same label words and question for both."""

    num_labels: int = 2
    label_words: list[str] = field(default_factory=lambda: ["negative", "positive"])
    instruction: str = ("Is the sentiment of this movie review positive or negative? "
                        "Reply with one word: positive or negative.")


def macro_f1(gold: list[int], predicted: list[int]) -> float:
    """Mean F1 over the classes that occur in the gold labels or the predictions (-1 = no label predicted)."""
    classes = sorted({*gold, *predicted} - {-1})
    if not classes:
        return 0.0
    total = 0.0
    for c in classes:
        tp = sum(g == c and p == c for g, p in zip(gold, predicted, strict=True))
        fp = sum(g != c and p == c for g, p in zip(gold, predicted, strict=True))
        fn = sum(g == c and p != c for g, p in zip(gold, predicted, strict=True))
        total += 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return total / len(classes)


_NUMBER = re.compile(r"[-+]?\d+(?:\.0*)?")


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w/]+", " ", text.lower()).split())


class ClassificationTask(Task):
    eval_mode = "choice"
    classification = True
    primary_metric = "accuracy"
    schema: ClassVar[type] = ClassificationSchema
    stop_strings: ClassVar[list[str]] = ["\n"]
    class_names: ClassVar[tuple[str, ...]]  # how the data may name each class, in class-id order
    hub_text_field: ClassVar[str] = "text"

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        tcfg = cfg.task
        if tcfg.num_labels != len(cls.class_names):
            raise ConfigError("task.num_labels", tcfg.num_labels, f"task {cls.name!r} has {len(cls.class_names)} "
                              f"classes: {', '.join(cls.class_names)}")
        if len(tcfg.label_words) != tcfg.num_labels or len(set(tcfg.label_words)) != len(tcfg.label_words):
            raise ConfigError("task.label_words", list(tcfg.label_words),
                              f"need {tcfg.num_labels} distinct words, one per class in order: "
                              f"{', '.join(cls.class_names)}")
        if kind_of(cfg).has_head and cfg.model.num_labels != tcfg.num_labels:
            raise ConfigError("model.num_labels", cfg.model.num_labels,
                              f"task {cls.name!r} has {tcfg.num_labels} classes; set model.num_labels=${{task.num_labels}}")

    # ----- data -----
    def local_examples(self, split: str, parse: Callable[[dict[str, Any], str], Example]) -> list[Example]:
        """Read the local files of `split`; records carry `text` and `label`."""
        raise NotImplementedError

    def load_split(self, split: str) -> list[Example]:
        field_name = self.hub_text_field
        return load_split_records(
            self.cfg, split, (field_name, "label"),
            lambda r, where: self.example(r[field_name], r["label"], where, field_name),
            local=lambda: self.local_examples(split, lambda r, where: self.example(r["text"], r["label"], where)),
        )

    def clean_text(self, text: str) -> str:
        return " ".join(str(text).split())

    @cached_property
    def _label_ids(self) -> dict[str, int]:
        """Every accepted spelling of a class: its id, its data name, its label word (normalised)."""
        ids = {str(i): i for i in range(len(self.class_names))}
        ids.update({_words(w): i for i, w in enumerate(self.cfg.label_words)})
        ids.update({_words(n): i for i, n in enumerate(self.class_names)})
        return ids

    def parse_label(self, value: Any, where: str) -> int:
        """A class id (int or digit string) or a class name / label word (any case) → class id."""
        text = str(value).strip()
        if _NUMBER.fullmatch(text):  # numeric labels must be class ids as they stand (-1 is no class)
            found = self._label_ids.get(str(int(float(text))))
        else:
            found = self._label_ids.get(_words(text))
        if found is not None:
            return found
        choices = [*range(len(self.class_names)), *self.class_names]
        raise DataError(f"{where}: field 'label' has {value!r}, which is not a class of task {self.name!r} "
                        f"(choices: {', '.join(map(str, choices))})")

    @cached_property
    def _format(self) -> dict[str, Any]:
        """Plain copies of the prompt settings: config lookups per record would dominate reading 60k rows."""
        cfg = self.cfg
        return {"instruction": cfg.instruction, "words": list(cfg.label_words), "max_chars": cfg.max_input_chars,
                "system": cfg.system_prompt}

    def example(self, text: Any, label: Any, where: str, text_field: str = "text") -> Example:
        fmt = self._format
        label_id = self.parse_label(label, where)
        text = self.clean_text(text)
        if not text:
            raise DataError(f"{where}: field {text_field!r} is empty")
        if fmt["max_chars"]:
            text = text[: fmt["max_chars"]]
        return Example(
            prompt=f"{fmt['instruction']}\n\n{text}" if fmt["instruction"] else text,
            target=fmt["words"][label_id], choices=fmt["words"], label=label_id, text=text, system=fmt["system"],
        )

    # ----- scoring -----
    def predicted_label(self, prediction: str) -> int:
        """The label word a free-form answer names (exactly, else the first one mentioned), or -1."""
        words = [_words(w) for w in self.cfg.label_words]
        answer = _words(prediction)
        if answer in words:
            return words.index(answer)
        hits = [(m.start(), i) for i, w in enumerate(words)
                if (m := re.search(rf"(?<!\w){re.escape(w)}(?!\w)", answer))]
        return min(hits)[1] if hits else -1

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        predicted = self.predicted_label(prediction)
        return {"accuracy": float(predicted == example.label), "predicted_label": predicted,
                "label": int(example.label)}

    def aggregate(self, scores: list[dict[str, float]]) -> dict[str, float]:
        if not scores:
            return {}
        gold = [int(s["label"]) for s in scores]
        predicted = [int(s["predicted_label"]) for s in scores]
        return {"accuracy": sum(s["accuracy"] for s in scores) / len(scores),
                "macro_f1": macro_f1(gold, predicted)}
