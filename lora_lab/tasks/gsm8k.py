"""`task=gsm8k`: grade-school math word problems, scored by exact match of the final number."""

from __future__ import annotations

from dataclasses import dataclass

from lora_lab.config.errors import DataError
from lora_lab.config.schema import positive
from lora_lab.tasks.answers import answers_match, final_answer
from lora_lab.tasks.base import Example, Task, TaskSchema
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.sources import load_split_records

FIELDS = ("question", "answer")


@dataclass
class Gsm8kSchema(TaskSchema):
    name: str = "gsm8k"
    eval_limit: int | None = positive(200)  # a quick evaluation by default; null: the whole split
    hub_id: str | None = "openai/gsm8k"
    hub_config: str | None = "main"
    max_new_tokens: int = 256
    instruction: str = "Solve the math problem step by step. End your answer with '#### ' followed by the final number."


@TASKS.option
class Gsm8kTask(Task):
    schema = Gsm8kSchema
    primary_metric = "accuracy"

    def load_split(self, split: str) -> list[Example]:
        return load_split_records(self.cfg, split, FIELDS, self._example)  # locally `<split>.jsonl`

    def _example(self, record: dict, where: str) -> Example:
        """A GSM8K answer ends in `#### <number>`; without it the reference would silently be the last number
        of the worked solution (or nothing), so such a row is refused at its line."""
        answer = str(record["answer"])
        reference = final_answer(answer)
        if reference is None:
            raise DataError(f"{where}: field 'answer' has no final '#### <number>' line (GSM8K format): "
                            f"{answer[-60:]!r}")
        return Example(prompt=f"{self.cfg.instruction}\n\n{record['question']}", target=answer,
                       reference=reference, system=self.cfg.system_prompt)

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        return {"accuracy": float(answers_match(prediction, example.reference))}
