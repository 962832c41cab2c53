"""`lora-lab-merge <adapter> <out> [overrides...]`: fold an adapter of any method into its base weights and write a
standalone transformers folder (safetensors + config + tokenizer) that loads without peft or lora-lab.

The merge is the adapter-format registry's (`methods/adapters.py`): peft's merge_and_unload, QLoRA into a
dequantised float base, RoSA's sparse part added, GaLore's deltas. The merged model's outputs equal the
unmerged adapter's up to float reassociation, and that is checked on every merge: a merged model whose outputs
on seeded probe inputs differ from the adapter's is refused with one line (exit 2) and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lora_lab.config.errors import ConfigError, exit_on_input_error
from lora_lab.utils.io import atomic_directory
from lora_lab.utils.quiet import quiet_known_noise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lora-lab-merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", type=Path, help="an adapter folder (e.g. outputs/runs/<run>/adapter)")
    parser.add_argument("out", type=Path, help="the folder to write the merged model to (must not exist)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.local_dir=<base copy>")
    return parser.parse_args(argv)


def merge_to_folder(adapter: Path, out: Path, overrides: list[str] | None = None) -> Path:
    from lora_lab.commands.saved_run import load_with_adapter  # imports peft: after quiet_known_noise in main
    from lora_lab.methods.adapters import merge_adapter

    if out.exists():
        raise ConfigError("out", str(out), "already exists; choose a new folder")
    _, model, tokenizer = load_with_adapter(adapter, overrides or [])
    merged = merge_adapter(model, adapter)  # MergeMismatch (nothing written) unless it reproduces the adapter
    merged.config.name_or_path = str(out)
    with atomic_directory(out, replace=False) as staged:  # a failed write leaves no half folder at `out`
        merged.save_pretrained(str(staged), safe_serialization=True)
        tokenizer.save_pretrained(str(staged))
    return out


def main(argv: list[str] | None = None) -> None:
    quiet_known_noise()
    args = parse_args(argv)
    with exit_on_input_error("lora-lab-merge"):
        print(merge_to_folder(args.adapter, args.out, args.overrides))


if __name__ == "__main__":
    main()
