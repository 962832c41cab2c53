"""`task=wikitext2`: WikiText-2 language modelling — perplexity with a strided sliding window.

An evaluation example is a block of consecutive lines of about `eval_block_chars` characters (paragraph
aligned, text kept exactly); the selected blocks are scored as one token stream, so without `eval_limit` this is
the standard protocol over the whole split: every token predicted from up to `context` tokens before it,
windows advancing by `stride`. With `eval_limit` a seeded subset of blocks is scored (a quick estimate).
Training examples are chunks of ~`train_chunk_chars` characters with the loss on every token.

`hub_config` picks the variant on the hub (`Salesforce/wikitext`) and locally alike: `wikitext-2-raw-v1`
reads `wikitext-2-raw-v1.<split>.jsonl` (field `text`, one row per line), `wikitext-2-v1` the tokenised
`valid.txt` / `test.txt` (with `<unk>`). A local copy without a train file gets a derived train split: the
whole validation split (disjoint from the test split that is evaluated; the same text in every run).

Encoders (`model=distilbert`) read `encoder_kind`: they train and score as masked LMs (pseudo-perplexity).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError, DataError
from lora_lab.config.schema import positive, ranged
from lora_lab.tasks.base import Example, Task, TaskSchema
from lora_lab.tasks.registry import TASKS
from lora_lab.tasks.sources import load_split_records, local_file, read_jsonl, text_lines

log = logging.getLogger("lora_lab")

LOCAL_FILES = {
    "wikitext-2-raw-v1": {"train": "wikitext-2-raw-v1.train.jsonl", "validation": "wikitext-2-raw-v1.validation.jsonl",
                          "test": "wikitext-2-raw-v1.test.jsonl"},
    "wikitext-2-v1": {"train": "train.txt", "validation": "valid.txt", "test": "test.txt"},
}
DERIVED_SPLITS = {"train": "validation"}  # a local copy without this split reads that one instead


def read_text_lines(path: Path) -> list[str]:
    lines = "".join(text for _, text in text_lines(path)).split("\n")
    if not any(line.strip() for line in lines):
        raise DataError(f"{path}: no records (empty file)")
    return lines


def read_jsonl_lines(path: Path) -> list[str]:
    return read_jsonl(path, ("text",), parse=lambda r, where: str(r["text"]))


READERS: dict[str, Callable[[Path], list[str]]] = {".txt": read_text_lines, ".jsonl": read_jsonl_lines}


def line_blocks(lines: list[str], min_chars: int) -> list[str]:
    """Consecutive lines grouped until a group holds >= `min_chars` characters. Joining the blocks with
    newlines gives back the text exactly, so the whole split scores as the standard stream."""
    blocks: list[list[str]] = [[]]
    size = 0  # characters of the current block once joined
    for line in lines:
        if size >= min_chars:
            blocks.append([])
            size = 0
        size += len(line) + (1 if blocks[-1] else 0)
        blocks[-1].append(line)
    return ["\n".join(block) for block in blocks if block]


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Consecutive non-blank lines packed into chunks of at most `max_chars` (long lines cut at spaces)."""
    pieces: list[str] = []
    for line in (line.strip() for line in text.split("\n")):
        while len(line) > max_chars:
            cut = line.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(line[:cut])
            line = line[cut:].strip()
        if line:
            pieces.append(line)
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 1 + len(piece) > max_chars:
            chunks.append(current)
            current = ""
        current = f"{current}\n{piece}" if current else piece
    if current:
        chunks.append(current)
    return chunks


@dataclass
class Wikitext2Schema(TaskSchema):
    name: str = "wikitext2"
    hub_id: str | None = "Salesforce/wikitext"
    hub_config: str | None = "wikitext-2-raw-v1"
    context: int = ranged(1024, ge=2)  # tokens the model sees per window
    stride: int = 512  # tokens scored per window (each predicted from >= context - stride tokens)
    windows_per_batch: int = positive(4)
    eval_block_chars: int = positive(1000)  # size of one evaluation example (eval_limit counts these)
    max_eval_tokens: int | None = ranged(None, ge=2)  # cap the evaluated stream (quick runs); null = every selected article
    train_chunk_chars: int = positive(2000)
    max_new_tokens: int = 1
    encoder_kind: str = "masked_lm"  # the head an encoder model takes on this task (encoder model configs read it)


@TASKS.option
class Wikitext2Task(Task):
    schema = Wikitext2Schema
    eval_mode = "perplexity"
    primary_metric = "perplexity"
    higher_is_better = False

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        super().check(cfg)
        tcfg = cfg.task
        if not 0 < tcfg.stride < tcfg.context:
            raise ConfigError("task.stride", tcfg.stride, f"must be in [1, task.context - 1 = {tcfg.context - 1}]")

    def _lines(self, split: str) -> list[str]:
        return load_split_records(self.cfg, split, ("text",), lambda r, where: str(r["text"]).rstrip("\n"),
                                  local=lambda: self._local_lines(split))

    def _local_lines(self, split: str) -> list[str]:
        if self.cfg.hub_config not in LOCAL_FILES:
            raise ConfigError("task.hub_config", self.cfg.hub_config, "no local files for this variant",
                              choices=list(LOCAL_FILES))
        files = LOCAL_FILES[self.cfg.hub_config]
        path = local_file(self.cfg, split, files)
        if not path.is_file() and split in DERIVED_SPLITS:
            derived = local_file(self.cfg, DERIVED_SPLITS[split], files)
            log.info("wikitext2: no local %s split (%s); training on the %s split", split, path.name, derived.name)
            path = derived
        return READERS[path.suffix](path)

    def load_split(self, split: str) -> list[Example]:
        """Blocks of the split's text in order; the text is the target (there is no prompt)."""
        blocks = line_blocks(self._lines(split), self.cfg.eval_block_chars)
        return [Example(prompt="", target=text, language_modeling=True) for text in blocks if text.strip()]

    def train_examples(self) -> list[Example]:
        text = "\n".join(self._lines(self.cfg.train_split))
        chunks = [Example(prompt="", target=chunk, language_modeling=True)
                  for chunk in chunk_text(text, self.cfg.train_chunk_chars)]
        return self._limited(chunks, self.cfg.train_limit, salt=1)

    def score(self, prediction: str, example: Example) -> dict[str, float]:
        raise NotImplementedError("wikitext2 is scored by perplexity (lora_lab.evaluation.perplexity_mode)")
