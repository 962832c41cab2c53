"""`lora-lab-merge <adapter> <out> [overrides...]`: fold an adapter of any method into its base weights and write a
standalone transformers folder (safetensors + config + tokenizer) that loads without peft or lora-lab.

The merge is the adapter-format registry's (`methods/adapters.py`): peft's merge_and_unload, QLoRA into a
dequantised float base, RoSA's sparse part added, GaLore's deltas. The merged model's outputs equal the
unmerged adapter's up to float reassociation, and that is checked on every merge: a merged model whose outputs
on seeded probe inputs differ from the adapter's is refused with one line (exit 2) and nothing is written.

The folder is ready to serve: `generation_config.json` stops where lora-lab's evaluation stops, the chat template
sits in `tokenizer_config.json` (where every loader looks, old transformers, vLLM and llama.cpp's converter
included), and weights above `max_shard_size` are split into safetensors shards with an index.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lora_lab.config.errors import ConfigError, exit_on_input_error
from lora_lab.utils.io import atomic_directory
from lora_lab.utils.made_from import already_made, folder_digest, record
from lora_lab.utils.quiet import quiet_known_noise

# the largest safetensors file written; a bigger model is sharded with model.safetensors.index.json. 5 GB: the
# hub's recommended file size (a 7B model in bf16 is 3 files, in f32 6); transformers' own default is 50 GB
DEFAULT_MAX_SHARD_SIZE = "5GB"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lora-lab-merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("adapter", type=Path, help="an adapter folder (e.g. outputs/runs/<run>/adapter)")
    parser.add_argument("out", type=Path, help="the folder to write the merged model to (must not exist)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.local_dir=<base copy>")
    return parser.parse_args(argv)


def merge_to_folder(adapter: Path, out: Path, overrides: list[str] | None = None,
                    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE) -> Path:
    from lora_lab.commands.saved_run import load_with_adapter  # imports peft: after quiet_known_noise in main
    from lora_lab.methods.adapters import merge_adapter

    request = {"tool": "lora-lab-merge", "adapter": str(Path(adapter).resolve()), "overrides": list(overrides or []),
               "max_shard_size": max_shard_size, "adapter_digest": folder_digest([adapter])}
    if out.exists():
        if already_made(out, request):  # the same merge finished before (e.g. killed after its last rename)
            print(f"lora-lab-merge: {out} already holds this merge (made_from.json); nothing to do", flush=True)
            return out
        raise ConfigError("out", str(out), "already exists; choose a new folder")
    _, model, tokenizer = load_with_adapter(adapter, overrides or [])
    merged = merge_adapter(model, adapter)  # MergeMismatch (nothing written) unless it reproduces the adapter
    merged.config.name_or_path = str(out)
    with atomic_directory(out, replace=False) as staged:  # a failed write leaves no half folder at `out`
        save_merged(merged, tokenizer, Path(staged), max_shard_size)
        record(staged, request)
    return out


def serving_generation_config(model, tokenizer):
    """The model's generation config with the ids a server needs to stop and pad: every EOS lora-lab's own
    evaluation stops on (the tokenizer's and the model's), so a chat turn ends in vLLM or `generate` as it did
    in evaluation. Sampling defaults a hub model ships are kept."""
    from transformers import GenerationConfig

    from lora_lab.evaluation.generation import eos_ids

    config = GenerationConfig.from_dict(model.generation_config.to_dict()) \
        if getattr(model, "generation_config", None) is not None else GenerationConfig()
    eos = eos_ids(model, tokenizer)
    if eos:
        config.eos_token_id = eos[0] if len(eos) == 1 else eos
    if tokenizer.bos_token_id is not None:
        config.bos_token_id = tokenizer.bos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else None)
    if pad is not None:
        config.pad_token_id = pad
    config._from_model_config = False  # written on purpose: transformers must not re-derive it from config.json
    return config


def save_merged(model, tokenizer, folder: Path, max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE) -> None:
    """Weights (sharded above `max_shard_size`), config, generation config and tokenizer into `folder`."""
    model.generation_config = serving_generation_config(model, tokenizer)
    model.save_pretrained(str(folder), safe_serialization=True, max_shard_size=max_shard_size)
    # save_jinja_files=False: the template stays in tokenizer_config.json rather than a chat_template.jinja that
    # only transformers >= 4.43 reads
    tokenizer.save_pretrained(str(folder), save_jinja_files=False)


def main(argv: list[str] | None = None) -> None:
    quiet_known_noise()
    args = parse_args(argv)
    with exit_on_input_error("lora-lab-merge"):
        print(merge_to_folder(args.adapter, args.out, args.overrides))


if __name__ == "__main__":
    main()
