"""Entry of each relaunched rank of a multi-process run: `python -m lora_lab.rank_entry <config.yaml> <run_dir>`.

`training/distributed.py` (`relaunch`) starts one of these per rank under torchrun with the parent's resolved
config; each runs the same `run_job` recipe as the CLI, as its rank. It lives on top, beside `cli.py`, because
it calls the recipes; the training library below never imports it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch.distributed as dist
from omegaconf import OmegaConf

from lora_lab.config.resolvers import register_resolvers
from lora_lab.jobs import run_job
from lora_lab.utils.quiet import quiet_known_noise

USAGE = "usage: python -m lora_lab.rank_entry <config.yaml> <run_dir>"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(USAGE, file=sys.stderr)
        return 2
    quiet_known_noise()
    register_resolvers()
    cfg = OmegaConf.load(args[0])
    try:
        run_job(cfg, Path(args[1]))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
