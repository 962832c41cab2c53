"""The third-party lines a default run prints that its user cannot act on, silenced one by one.

Each filter names the module (or logger) that emits the line and the start of its message, so the same library's
other warnings, and every warning of lora-lab's own, still show. `quiet_known_noise()` runs once at each entry
point (`cli.py`, `rank_entry.py`, `commands/merge.py`), before peft is imported: bitsandbytes logs its line while
peft imports it. Standard library only, so importing this module first costs nothing.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings

# (category, module that calls warnings.warn, start of the message): Python's `warnings` filter fields
WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # peft's PeftModel.__init__ reads `model.is_gradient_checkpointing`, which transformers 5 deprecated: a
    # peft/transformers pairing inside the libraries, not a call a user's config or code makes.
    (FutureWarning, r"transformers\.modeling_utils\Z", r"`is_gradient_checkpointing` is deprecated"),
    # peft's save_pretrained asks the hub for the base's config.json to learn whether the vocabulary was resized;
    # offline it cannot ask, and assumes not. lora-lab never resizes embeddings, so the assumption holds.
    (UserWarning, r"peft\.utils\.save_and_load\Z",
     r"Could not find a config file in .* - will assume that the vocabulary was not modified"),
    # the same lookup without network but not in offline mode: peft ignores the failure (and then warns as above)
    (UserWarning, r"peft\.utils\.other\Z",
     r"(?s)Unable to fetch remote file due to the following error .* for the file config\.json in "),
)

# (logger, start of the message): logging records that a filter on that logger drops
LOG_LINES: tuple[tuple[str, str], ...] = (
    # bitsandbytes, imported by peft, on a CPU with AVX512-BF16 tries to fetch an optional 4-bit matmul kernel from
    # the hub (`pip install kernels`) and falls back to its own CPU kernel; lora-lab's 4-bit path (QLoRA) runs
    # on CUDA and an offline run could not fetch the kernel anyway.
    ("bitsandbytes.backends.cpu.ops", r"Failed to load CPU gemm_4bit_forward from kernels-community"),
    # the same fetch, one step earlier, since `kernels` 0.19 (pulled in by transformers 5.25): offline it cannot
    # check the kernel's publisher and says so before failing to find the kernel in its cache
    ("kernels._internals.hf_hub",
     r"Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' because "),
)


class DropMessages(logging.Filter):
    """A logger filter that drops the records whose message starts with one of `patterns`."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


def quiet_known_noise() -> None:
    """Install the filters above (again is harmless), and keep hub/transformers progress bars off a stderr that
    is not a terminal: there tqdm's redraws ("Loading weights: 100%|...") land in the job's log as text, and
    lora-lab writes its own progress lines to the run's train.log instead."""
    for category, module, message in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    by_logger: dict[str, list[str]] = {}
    for name, message in LOG_LINES:
        by_logger.setdefault(name, []).append(message)
    for name, messages in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropMessages) for f in logger.filters):
            logger.addFilter(DropMessages(messages))
    if not sys.stderr.isatty():
        _progress_bars_off()


def _progress_bars_off() -> None:
    # read by huggingface_hub when it is imported (transformers follows it at its own import); a user's own
    # HF_HUB_DISABLE_PROGRESS_BARS wins
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] != "1":
        return
    if "huggingface_hub" in sys.modules:  # already imported: the environment was read; switch them off directly
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
