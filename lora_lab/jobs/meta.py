"""Recipe `meta`: gradient-free adapter generation from a bank of LoRAs (see docs/meta_generation.md)."""

from __future__ import annotations

from lora_lab.jobs import JOBS
from lora_lab.jobs.context import JobContext


@JOBS.register("meta")
def meta_generate(ctx: JobContext) -> dict:
    raise NotImplementedError(
        "method=meta (meta-generation from a LoRA bank) is not implemented yet in this version of lora-lab"
    )
