"""`lora-lab-generate <adapter or model folder> "prompt" [--max-new-tokens N --temperature T --top-p P]`: try a
trained adapter (loaded on its base, unmerged) or a merged model folder on free text.

The prompt goes through the tokenizer's chat template when it has one (as in training with
`model.use_chat_template`), unless `--no-chat-template`. Greedy by default; `--temperature` > 0 samples
(transformers' own sampling, seeded by `--seed`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lora_lab.config.errors import ConfigError, exit_on_input_error
from lora_lab.models.kinds import KINDS, kind_of
from lora_lab.utils.quiet import quiet_known_noise


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lora-lab-generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="an adapter folder, or a (merged) transformers model folder")
    parser.add_argument("prompt", help="the user message")
    parser.add_argument("overrides", nargs="*", help="config overrides for an adapter's base, e.g. model.local_dir=...")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy; > 0: sample")
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--system", default=None, help="a system message")
    parser.add_argument("--no-chat-template", action="store_true", help="send the prompt as plain text")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load(folder: Path, overrides: list[str]):
    """(model, tokenizer, use_chat_template) from an adapter folder or a plain model folder."""
    # lora_lab.methods (any submodule) loads every method, and with them peft and bitsandbytes: after
    # quiet_known_noise in main
    from lora_lab.commands.saved_run import load_with_adapter
    from lora_lab.methods.adapter_files import ADAPTER_CONFIG

    if (folder / ADAPTER_CONFIG).is_file():
        cfg, model, tokenizer = load_with_adapter(folder, overrides)
        if not kind_of(cfg).causal:
            raise ConfigError("model.kind", cfg.model.kind, "generation needs a causal LM",
                              choices=[k for k in KINDS.names() if KINDS.get(k).causal])
        return model, tokenizer, bool(cfg.model.use_chat_template)
    if not (folder / "config.json").is_file():
        raise ConfigError("model", str(folder), f"neither an adapter ({ADAPTER_CONFIG}) nor a model (config.json)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(str(folder)).eval(), AutoTokenizer.from_pretrained(str(folder)), True


def complete(model, tokenizer, prompt: str, *, use_chat_template: bool, system: str | None = None,
             max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0, seed: int = 0) -> str:
    # lazy: lora_lab.tasks loads every task (rouge_score: ~2 s); --help and usage errors go without it
    from lora_lab.tasks.base import Example
    from lora_lab.training.tokenize import prompt_ids, render_prompt

    if max_new_tokens < 1:
        raise ConfigError("--max-new-tokens", max_new_tokens, "must be >= 1")
    if temperature < 0 or not 0 < top_p <= 1:
        raise ConfigError("--temperature/--top-p", (temperature, top_p), "need temperature >= 0 and top_p in (0, 1]")
    text = render_prompt(tokenizer, Example(prompt=prompt, target="", system=system), use_chat_template)
    ids = torch.tensor([prompt_ids(tokenizer, text)], device=next(model.parameters()).device)
    sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p} if temperature > 0 else {
        "do_sample": False}
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def main(argv: list[str] | None = None) -> None:
    quiet_known_noise()
    args = parse_args(argv)
    with exit_on_input_error("lora-lab-generate"):
        model, tokenizer, chat = load(args.model, args.overrides)
        print(complete(model, tokenizer, args.prompt, use_chat_template=chat and not args.no_chat_template,
                       system=args.system, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                       top_p=args.top_p, seed=args.seed))


if __name__ == "__main__":
    main()
