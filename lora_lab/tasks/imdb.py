"""`task=imdb`: Large Movie Review Dataset (Maas et al., 2011), binary sentiment of full reviews.

Hub: `stanfordnlp/imdb` (train/test, 25k each). Local: `train.jsonl` / `test.jsonl` with `text` and `label`
(1 = positive, 0 = negative). Reviews keep the corpus's `<br />` tags; they are turned into line breaks.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lora_lab.config.schema import positive
from lora_lab.tasks.base import Example
from lora_lab.tasks.classification import ClassificationTask, SentimentSchema
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.sources import local_file, read_jsonl

_BREAK = re.compile(r"(?:<br\s*/?>\s*)+", re.IGNORECASE)


@dataclass
class ImdbSchema(SentimentSchema):
    name: str = "imdb"
    eval_limit: int | None = positive(200)  # a quick evaluation by default; null: the whole split
    hub_id: str | None = "stanfordnlp/imdb"


@TASKS.option
class ImdbTask(ClassificationTask):
    schema = ImdbSchema
    class_names = ("negative", "positive")

    def clean_text(self, text: str) -> str:
        return "\n".join(" ".join(part.split()) for part in _BREAK.split(str(text))).strip()

    def local_examples(self, split: str, parse: Callable[[dict[str, Any], str], Example]) -> list[Example]:
        return read_jsonl(local_file(self.cfg, split), ("text", "label"), parse=parse)
