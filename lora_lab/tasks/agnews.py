"""`task=agnews`: AG's News topic classification (World, Sports, Business, Sci/Tech).

Hub: `fancyzhx/ag_news` (train 120k / test 7.6k, integer labels). Local: TSV `text<TAB>label` without a
header, labels named; the local copy has no train file, so `train` reads dev.tsv (10k rows drawn from AG's
train set). The corpus writes `$` as `#36;` and line breaks as `\\`; both are undone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lora_lab.config.schema import positive
from lora_lab.tasks.base import Example
from lora_lab.tasks.classification import ClassificationSchema, ClassificationTask
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.sources import local_file, read_tsv

LOCAL_FILES = {"train": "dev.tsv", "dev": "dev.tsv", "test": "test.tsv"}
_ENTITY = re.compile(r"&?#(\d{2,4});")


@dataclass
class AgnewsSchema(ClassificationSchema):
    name: str = "agnews"
    eval_limit: int | None = positive(200)  # a quick evaluation by default; null: the whole split
    hub_id: str | None = "fancyzhx/ag_news"
    num_labels: int = 4
    label_words: list[str] = field(default_factory=lambda: ["World", "Sports", "Business", "Technology"])
    instruction: str = ("What is the topic of this news article: World, Sports, Business or Technology? "
                        "Reply with one word.")


@TASKS.option
class AgnewsTask(ClassificationTask):
    schema = AgnewsSchema
    class_names = ("World", "Sports", "Business", "Sci/Tech")

    def clean_text(self, text: str) -> str:
        text = _ENTITY.sub(lambda m: chr(int(m.group(1))), str(text)).replace("\\", " ")
        return " ".join(text.split())

    def local_examples(self, split: str, parse: Callable[[dict[str, Any], str], Example]) -> list[Example]:
        return read_tsv(local_file(self.cfg, split, LOCAL_FILES), ("text", "label"), header=False, parse=parse)
