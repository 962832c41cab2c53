"""`task=news_summary`: abstractive news summarisation, scored by Rouge-1/2/L F (stemming on).

Hub: `EdinburghNLP/xsum` (BBC articles → one-sentence summaries; fields `document`, `summary`). Local:
`<split>.jsonl` with `text` (or `document`) and `summary` — e.g. Inshorts ~60-word articles → their headlines,
or an XSum sample (`task.eval_split=xsum_test_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lora_lab.config.errors import DataError
from lora_lab.config.schema import positive
from lora_lab.tasks.base import Example, Task, TaskSchema
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.rouge import rouge_f
from lora_lab.tasks.sources import load_split_records

TEXT_FIELDS = ("text", "document")  # local Inshorts-style files use `text`, XSum uses `document`


@dataclass
class NewsSummarySchema(TaskSchema):
    name: str = "news_summary"
    eval_limit: int | None = positive(200)  # a quick evaluation by default; null: the whole split
    hub_id: str | None = "EdinburghNLP/xsum"
    max_new_tokens: int = 48
    max_input_chars: int | None = positive(4000)  # XSum articles run long; Inshorts ones are ~400 characters
    instruction: str = "Write a one-sentence headline that summarises this news article. Reply with the headline only."


@TASKS.option
class NewsSummaryTask(Task):
    schema = NewsSummarySchema
    primary_metric = "rougeL"
    stop_strings = ["\n"]

    def _example(self, record: dict[str, Any], where: str) -> Example:
        field = next((f for f in TEXT_FIELDS if f in record), None)
        if field is None:
            raise DataError(f"{where}: missing field 'text' (or 'document') (have: {', '.join(map(str, record))})")
        text = " ".join(str(record[field]).split())
        summary = " ".join(str(record["summary"]).split())
        for name, value in ((field, text), ("summary", summary)):
            if not value:
                raise DataError(f"{where}: field {name!r} is empty")
        if self.cfg.max_input_chars:
            text = text[: self.cfg.max_input_chars]
        return Example(prompt=f"{self.cfg.instruction}\n\n{text}", target=summary, system=self.cfg.system_prompt)

    def load_split(self, split: str) -> list[Example]:
        return load_split_records(self.cfg, split, ("summary",), self._example)  # locally `<split>.jsonl`

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        return rouge_f(prediction, example.reference)
