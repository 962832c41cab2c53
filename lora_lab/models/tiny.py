"""Random, tiny models with a character-level tokenizer: the whole model path in milliseconds, offline.

`tiny.architecture` picks the family (a registry of config builders): `llama` (the default, causal or
sequence classification), `bert` and `distilbert` (encoders, sequence classification or masked LM), so
tests exercise each family's module names without a download.
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    BertConfig,
    DistilBertConfig,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedTokenizerFast,
)

from lora_lab.models.kinds import KINDS
from lora_lab.registry import Registry

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
MASK = "<mask>"  # appended after the characters, so the Llama vocabulary keeps its ids
CHARACTERS = string.printable
ARCHITECTURES: Registry = Registry("tiny architecture", "model.tiny.architecture")


def build_char_tokenizer(with_mask: bool = False) -> PreTrainedTokenizerFast:
    tokens = SPECIALS + [c for c in CHARACTERS if c not in SPECIALS] + ([MASK] if with_mask else [])
    vocab = {token: i for i, token in enumerate(tokens)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()  # characters join back without spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        clean_up_tokenization_spaces=False, **({"mask_token": MASK} if with_mask else {}),
    )
    tokenizer.padding_side = "right"
    return tokenizer


def is_encoder(options: dict) -> bool:
    return options.get("architecture", "llama") != "llama"


@ARCHITECTURES.register("llama")
def llama_config(tokenizer: PreTrainedTokenizerFast, options: dict, num_labels: int) -> PretrainedConfig:
    return LlamaConfig(
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


@ARCHITECTURES.register("bert")
def bert_config(tokenizer: PreTrainedTokenizerFast, options: dict, num_labels: int) -> PretrainedConfig:
    """BERT / MiniLM layout: attention projections named query, key, value."""
    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=int(options.get("hidden_size", 64)),
        intermediate_size=int(options.get("intermediate_size", 128)),
        num_hidden_layers=int(options.get("num_hidden_layers", 2)),
        num_attention_heads=int(options.get("num_attention_heads", 4)),
        max_position_embeddings=int(options.get("max_position_embeddings", 512)),
        pad_token_id=tokenizer.pad_token_id, num_labels=num_labels,
    )


@ARCHITECTURES.register("distilbert")
def distilbert_config(tokenizer: PreTrainedTokenizerFast, options: dict, num_labels: int) -> PretrainedConfig:
    """DistilBERT layout: q_lin, k_lin, v_lin, out_lin, lin1, lin2, and a pre_classifier in the head."""
    return DistilBertConfig(
        vocab_size=int(options.get("vocab_size", len(tokenizer))), dim=int(options.get("hidden_size", 64)),
        hidden_dim=int(options.get("intermediate_size", 128)), n_layers=int(options.get("num_hidden_layers", 2)),
        n_heads=int(options.get("num_attention_heads", 4)),
        max_position_embeddings=int(options.get("max_position_embeddings", 512)),
        pad_token_id=tokenizer.pad_token_id, num_labels=num_labels,
    )


def tiny_config(tokenizer: PreTrainedTokenizerFast, options: dict, num_labels: int) -> PretrainedConfig:
    return ARCHITECTURES.get(str(options.get("architecture", "llama")))(tokenizer, options, num_labels)


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, options: dict, *, kind: str, num_labels: int, seed: int):
    config = tiny_config(tokenizer, options, num_labels)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return KINDS.get(kind).auto_class.from_config(config)
