"""`lora-lab-export <adapter or merged folder> <out.gguf> [--type f32|f16|bf16|q8_0] [overrides...]`: write a
trained adapter, folded into its base, as one GGUF file that llama.cpp (and llama-cpp-python, ollama, LM Studio)
runs with its tokenizer and chat template inside.

An adapter is merged exactly as `lora-lab-merge` merges it, so the merged model is checked against the adapter
before anything is written (MergeMismatch: exit 2, nothing at out). A folder that already holds a merged
transformers model (config.json + safetensors, no adapter_config.json) is exported as it is. Only Llama-layout
causal LMs (llama, mistral) are exported; anything else, an unknown --type, or an existing out is refused with
one line before any file is opened, and a failure while writing leaves nothing at out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lora_lab.config.errors import ConfigError, exit_on_input_error
from lora_lab.models.kinds import KINDS, kind_of
from lora_lab.utils.quiet import quiet_known_noise

DEFAULT_TYPE = "f16"  # llama.cpp's own converter default: half the size of f32, logits within ~1e-2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lora-lab-export", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="an adapter folder (outputs/runs/<run>/adapter) or a merged "
                        "model folder (lora-lab-merge's output)")
    parser.add_argument("out", type=Path, help="the GGUF file to write (must not exist)")
    parser.add_argument("overrides", nargs="*", help="config overrides for an adapter's base, e.g. model.local_dir=...")
    # no argparse `choices`: an unknown type is a ConfigError naming the registry's choices, like every bad value
    parser.add_argument("--type", default=DEFAULT_TYPE, help="f32, f16 (default), bf16 or q8_0")
    return parser.parse_args(argv)


def _causal_kinds() -> list[str]:
    return [k for k in KINDS.names() if KINDS.get(k).causal]


def load_merged_model(source: Path, overrides: list[str] | None = None):
    """(merged model, tokenizer) from an adapter folder (merged and checked here) or a merged model folder."""
    # lora_lab.methods imports peft and bitsandbytes: after quiet_known_noise in main
    from lora_lab.methods.adapter_files import ADAPTER_CONFIG

    if (source / ADAPTER_CONFIG).is_file():
        from lora_lab.commands.saved_run import load_with_adapter
        from lora_lab.methods.adapters import merge_adapter
        from lora_lab.models.gguf_export import check_exportable

        cfg, model, tokenizer = load_with_adapter(source, overrides or [])
        if not kind_of(cfg).causal:
            raise ConfigError("model.kind", cfg.model.kind, "GGUF export needs a causal LM", choices=_causal_kinds())
        check_exportable(model.config)  # before the merge: refusing costs no merge
        return merge_adapter(model, source), tokenizer  # MergeMismatch (nothing written) unless it matches
    if not (source / "config.json").is_file() or not any(source.glob("*.safetensors")):
        raise ConfigError("source", str(source), f"neither an adapter ({ADAPTER_CONFIG}) nor a merged model folder "
                          "(config.json + *.safetensors)")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lora_lab.models.gguf_export import check_exportable

    check_exportable(AutoConfig.from_pretrained(str(source)))
    model = AutoModelForCausalLM.from_pretrained(str(source), dtype="float32")
    return model.eval(), AutoTokenizer.from_pretrained(str(source))


def export_to_gguf(source: Path, out: Path, type_name: str = DEFAULT_TYPE,
                   overrides: list[str] | None = None) -> Path:
    from lora_lab.models.gguf_export import EXPORT_TYPES, write_gguf

    EXPORT_TYPES.get(type_name)  # a typo'd --type fails before a model is loaded
    if out.exists():
        raise ConfigError("out", str(out), "already exists; choose a new file")
    model, tokenizer = load_merged_model(source, overrides)
    return write_gguf(model, tokenizer, out, type_name)


def main(argv: list[str] | None = None) -> None:
    quiet_known_noise()
    args = parse_args(argv)
    with exit_on_input_error("lora-lab-export"):
        print(export_to_gguf(args.source, args.out, args.type, args.overrides))


if __name__ == "__main__":
    main()
