"""`task=sst2`: Stanford Sentiment Treebank (GLUE SST-2), binary sentiment of movie-review phrases.

Hub: `stanfordnlp/sst2` (its test split is unlabelled, so evaluation uses `validation`). Local: TSV files
`sentence<TAB>label` with a header; `validation` reads test.tsv, the labelled GLUE validation set (872).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lora_lab.config.schema import positive
from lora_lab.tasks.base import Example
from lora_lab.tasks.classification import ClassificationTask, SentimentSchema
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.sources import local_file, read_tsv

LOCAL_FILES = {"train": "train.tsv", "dev": "dev.tsv", "validation": "test.tsv", "test": "test.tsv"}


@dataclass
class Sst2Schema(SentimentSchema):
    name: str = "sst2"
    eval_limit: int | None = positive(200)  # a quick evaluation by default; null: the whole split
    hub_id: str | None = "stanfordnlp/sst2"
    eval_split: str = "validation"


@TASKS.option
class Sst2Task(ClassificationTask):
    schema = Sst2Schema
    class_names = ("negative", "positive")
    hub_text_field = "sentence"

    def local_examples(self, split: str, parse: Callable[[dict[str, Any], str], Example]) -> list[Example]:
        return read_tsv(local_file(self.cfg, split, LOCAL_FILES), ("text", "label"), header=True, parse=parse)
