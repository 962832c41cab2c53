"""A random, tiny Llama with a character-level tokenizer: the whole model path in milliseconds, offline."""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARACTERS = string.printable


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate(SPECIALS + [c for c in CHARACTERS if c not in SPECIALS])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()  # characters join back without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.padding_side = "right"
    return tokenizer


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, options: dict, *, kind: str, num_labels: int, seed: int):
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=int(options.get("hidden_size", 64)),
        intermediate_size=int(options.get("intermediate_size", 128)),
        num_hidden_layers=int(options.get("num_hidden_layers", 2)),
        num_attention_heads=int(options.get("num_attention_heads", 4)),
        num_key_value_heads=int(options.get("num_key_value_heads", 2)),
        max_position_embeddings=int(options.get("max_position_embeddings", 1024)),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
        # Larger than Llama's 0.02: with hidden 64 the final norm caps hidden states, and 0.02-sized output rows
        # would cap every logit near zero, so no adapter could make the tiny model confident.
        initializer_range=float(options.get("initializer_range", 0.2)),
        num_labels=num_labels,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cls = LlamaForSequenceClassification if kind == "sequence_classification" else LlamaForCausalLM
        return cls(config)
