"""A Llama-layout transformers model (Llama, Mistral) and its tokenizer, written as one GGUF file llama.cpp runs.

llama.cpp reads everything from the file: the hyper-parameters as `llama.*` keys, the tokenizer as
`tokenizer.ggml.*` keys (vocabulary, merges, special ids, chat template), and the weights under its own tensor
names. Two details differ from the transformers layout: q/k projection rows are interleaved per head for
llama.cpp's rotary kernel (the inverse of what transformers undoes when it reads a llama GGUF), and a tied
output projection is left out (llama.cpp reuses the embedding). Tensors are converted one at a time as they are
written, so the file never needs a second copy of the model in memory; the file appears at `out` only whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.registry import Registry
from lora_lab.utils.io import atomic_file

SUPPORTED_MODEL_TYPES = ("llama", "mistral")  # config.model_type values whose weights llama.cpp's LLAMA arch runs
Q8_0_BLOCK = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]  # row length a q8_0 tensor must divide by


@dataclass(frozen=True)
class ExportType:
    """`--type`: what the matrices are stored as (vectors such as norms stay f32, as in llama.cpp's own files)."""

    file_type: gguf.LlamaFileType
    matrix: gguf.GGMLQuantizationType


EXPORT_TYPES: Registry[ExportType] = Registry("GGUF type", "--type")
EXPORT_TYPES.add("f32", ExportType(gguf.LlamaFileType.ALL_F32, gguf.GGMLQuantizationType.F32))
EXPORT_TYPES.add("f16", ExportType(gguf.LlamaFileType.MOSTLY_F16, gguf.GGMLQuantizationType.F16))
EXPORT_TYPES.add("bf16", ExportType(gguf.LlamaFileType.MOSTLY_BF16, gguf.GGMLQuantizationType.BF16))
EXPORT_TYPES.add("q8_0", ExportType(gguf.LlamaFileType.MOSTLY_Q8_0, gguf.GGMLQuantizationType.Q8_0))


# ---- what can be exported -------------------------------------------------------------------------------------

def check_exportable(config) -> None:
    """Refuse, before anything is written, a model llama.cpp's LLAMA arch would run wrongly or not at all."""
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ConfigError("model_type", model_type, "GGUF export writes Llama-layout decoders only",
                          choices=SUPPORTED_MODEL_TYPES)
    heads = [a for a in (getattr(config, "architectures", None) or []) if not a.endswith("ForCausalLM")]
    if heads:
        raise ConfigError("architectures", heads[0], "GGUF export needs a causal LM (a model with a head is not one)",
                          choices=[f"{model_type.capitalize()}ForCausalLM"])
    rope_type = _rope(config).get("rope_type", "default")
    if rope_type != "default":
        raise ConfigError("rope_parameters.rope_type", rope_type, "rope scaling is not exported", choices=["default"])
    for key in ("attention_bias", "mlp_bias"):
        if getattr(config, key, False):
            raise ConfigError(key, True, "bias terms are not exported", choices=[False])


def _rope(config) -> dict:
    """transformers 5 keeps rope settings in `rope_parameters`; older configs have `rope_theta`/`rope_scaling`."""
    params = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    return params


def head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


# ---- metadata ---------------------------------------------------------------------------------------------------

def write_model_metadata(writer: gguf.GGUFWriter, config, export_type: ExportType, name: str) -> None:
    """The `llama.*` hyper-parameters llama.cpp builds the graph from."""
    heads = int(config.num_attention_heads)
    dim = head_dim(config)
    writer.add_name(name)
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(getattr(config, "num_key_value_heads", None) or heads))
    writer.add_rope_dimension_count(dim)
    if dim * heads != int(config.hidden_size):  # e.g. Mistral Nemo: heads are not hidden_size / n_head wide
        writer.add_key_length(dim)
        writer.add_value_length(dim)
    writer.add_rope_freq_base(float(_rope(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_file_type(int(export_type.file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


# ---- tokenizer --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Vocabulary:
    """The tokenizer as llama.cpp's `tokenizer.ggml.*` keys spell it."""

    model: str  # tokenizer.ggml.model: "gpt2" is byte-level BPE
    pre: str  # tokenizer.ggml.pre: which pre-tokenizer regex llama.cpp splits text with
    tokens: list[str]
    token_types: list[int]
    merges: list[str]


def _is_byte_level(node: dict | None) -> bool:
    return bool(node) and node.get("type") == "ByteLevel"


def _pre_gpt2(node: dict) -> bool:
    return _is_byte_level(node) and node.get("use_regex", True)


def _pre_smollm(node: dict) -> bool:
    """SmolLM/SmolLM2 on the hub: every digit its own piece, then GPT-2's byte-level split."""
    steps = node.get("pretokenizers") or []
    return (node.get("type") == "Sequence" and len(steps) == 2 and steps[0].get("type") == "Digits"
            and steps[0].get("individual_digits") and _pre_gpt2(steps[1]))


# pre-tokenizer (tokenizer.json's `pre_tokenizer`) -> llama.cpp's name for the same split (its spelling: `gpt-2`),
# first match wins
PRE_TOKENIZERS = {"smollm": _pre_smollm, "gpt-2": _pre_gpt2}


def _byte_level_bpe(spec: dict, tokens: list[str]) -> tuple[str, list[str], list[str]]:
    """A byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3) is stored as it is: tokens, merges, pre-tokenizer."""
    node = spec.get("pre_tokenizer") or {}
    pre = next((name for name, matches in PRE_TOKENIZERS.items() if matches(node)), None)
    if pre is None or not _is_byte_level(spec.get("decoder")):
        raise ConfigError("tokenizer.pre_tokenizer", node.get("type"), "no llama.cpp pre-tokenizer matches it",
                          choices=list(PRE_TOKENIZERS))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    return pre, tokens, merges


def _characters(spec: dict, tokens: list[str]) -> tuple[str, list[str], list[str]]:
    """A one-character-per-token vocabulary (the tiny test models) is byte-level BPE with no merges: each ASCII
    character is respelled in GPT-2's byte alphabet, and text splits into the same ids in llama.cpp."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = bytes_to_unicode()
    special = {t["content"] for t in spec.get("added_tokens", [])}
    respelled = []
    for token in tokens:
        if token not in special and not (len(token) == 1 and ord(token) < 128):
            raise ConfigError("tokenizer.model", "WordLevel", f"token {token!r} is not one ASCII character",
                              choices=list(TOKENIZER_MODELS))
        respelled.append(token if token in special else alphabet[ord(token)])
    return "gpt-2", respelled, []


# tokenizer.json's `model.type` -> how its vocabulary becomes a byte-level GGUF vocabulary
TOKENIZER_MODELS = {"BPE": _byte_level_bpe, "WordLevel": _characters}
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = (
    int(gguf.TokenType.NORMAL), int(gguf.TokenType.CONTROL), int(gguf.TokenType.USER_DEFINED),
    int(gguf.TokenType.UNUSED))


def vocabulary(tokenizer, vocab_size: int) -> Vocabulary:
    """The tokenizer's vocabulary, padded with unused tokens up to the model's embedding rows."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = spec["model"]["type"]
    if kind not in TOKENIZER_MODELS:
        raise ConfigError("tokenizer.model", kind, "no GGUF vocabulary for this tokenizer model",
                          choices=list(TOKENIZER_MODELS))
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    size = max(vocab_size, max(by_id) + 1)
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    added = {t["content"]: t for t in spec.get("added_tokens", [])}
    types = [TOKEN_UNUSED if i not in by_id
             else (TOKEN_CONTROL if added[t].get("special") else TOKEN_USER_DEFINED) if t in added
             else TOKEN_NORMAL for i, t in enumerate(tokens)]
    pre, tokens, merges = TOKENIZER_MODELS[kind](spec, tokens)
    return Vocabulary("gpt2", pre, tokens, types, merges)


def _adds(tokenizer, token_id: int | None, first: bool) -> bool:
    """Whether encoding plain text puts this special token at the start (`first`) or end of the ids."""
    if token_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0 if first else -1] == token_id


def write_tokenizer_metadata(writer: gguf.GGUFWriter, tokenizer, vocab_size: int) -> None:
    vocab = vocabulary(tokenizer, vocab_size)
    writer.add_tokenizer_model(vocab.model)
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    # llama.cpp requires the key even when empty; gguf-py's add_array drops an empty list, so it is set directly
    writer.add_key_value(gguf.Keys.Tokenizer.MERGES, vocab.merges, gguf.GGUFValueType.ARRAY,
                         sub_type=gguf.GGUFValueType.STRING)
    for token_id, add in ((tokenizer.bos_token_id, writer.add_bos_token_id),
                          (tokenizer.eos_token_id, writer.add_eos_token_id),
                          (tokenizer.unk_token_id, writer.add_unk_token_id),
                          (tokenizer.pad_token_id, writer.add_pad_token_id)):
        if token_id is not None:
            add(int(token_id))
    writer.add_add_bos_token(_adds(tokenizer, tokenizer.bos_token_id, first=True))
    writer.add_add_eos_token(_adds(tokenizer, tokenizer.eos_token_id, first=False))
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str) and template:
        writer.add_chat_template(template)


class _Writer(gguf.GGUFWriter):
    """GGUFWriter that can store an empty array (a character vocabulary has no merges): GGUF allows one,
    gguf-py's packer refuses it."""

    def _pack_val(self, val, vtype, add_vtype, sub_type=None):
        if vtype == gguf.GGUFValueType.ARRAY and len(val) == 0:
            head = self._pack("I", vtype) if add_vtype else b""
            return head + self._pack("I", sub_type or gguf.GGUFValueType.STRING) + self._pack("Q", 0)
        return super()._pack_val(val, vtype, add_vtype, sub_type)


# ---- tensors ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PlannedTensor:
    """One tensor of the file: where it comes from, how it is reordered, what it is stored as."""

    name: str  # llama.cpp's name, e.g. blk.0.attn_q.weight
    source: str  # the state-dict key
    rope_heads: int | None  # q/k projections: rows interleaved per head for llama.cpp's rotary layout
    qtype: gguf.GGMLQuantizationType


def rope_interleave(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Per head, transformers keeps the two rotary halves as [x0..x(d/2-1), y0..y(d/2-1)]; llama.cpp's LLAMA
    arch rotates adjacent pairs, so rows go to [x0, y0, x1, y1, ...]."""
    half = weight.shape[0] // n_head // 2
    return weight.reshape(n_head, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def plan_tensors(state: dict[str, torch.Tensor], config, export_type: ExportType) -> list[PlannedTensor]:
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(config.num_hidden_layers))
    heads = int(config.num_attention_heads)
    rope_heads = {"attn_q": heads, "attn_k": int(getattr(config, "num_key_value_heads", None) or heads)}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    plan = []
    for key, tensor in state.items():
        if key.endswith("rotary_emb.inv_freq") or (tied and key == "lm_head.weight"):
            continue  # recomputed by llama.cpp / the embedding, reused
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConfigError("tensor", key, "has no llama.cpp LLAMA name", choices=SUPPORTED_MODEL_TYPES)
        qtype = export_type.matrix if tensor.dim() >= 2 else gguf.GGMLQuantizationType.F32
        if qtype == gguf.GGMLQuantizationType.Q8_0 and tensor.shape[-1] % Q8_0_BLOCK:
            qtype = gguf.GGMLQuantizationType.F16  # as llama.cpp's converter does for rows q8_0 cannot block
        block = name.split(".")[2] if name.startswith("blk.") else None
        plan.append(PlannedTensor(name, key, rope_heads.get(block), qtype))
    return plan


_NUMPY = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}


def encode(array: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    """float32 array -> the bytes (or float array) stored for `qtype`."""
    if qtype in _NUMPY:
        return array.astype(_NUMPY[qtype])
    return gguf.quants.quantize(array, qtype)


def stored_shape(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> tuple[tuple[int, ...], np.dtype]:
    """What `encode` will return for a tensor of `shape`, known before the data is converted."""
    if qtype in _NUMPY:
        return shape, np.dtype(_NUMPY[qtype])
    return gguf.quants.quant_shape_to_byte_shape(shape, qtype), np.dtype(np.uint8)


def tensor_data(state: dict[str, torch.Tensor], planned: PlannedTensor) -> np.ndarray:
    array = state[planned.source].detach().to(torch.float32).cpu().numpy()
    if planned.rope_heads is not None:
        array = rope_interleave(array, planned.rope_heads)
    return encode(np.ascontiguousarray(array), planned.qtype)


def write_tensor(writer: gguf.GGUFWriter, data: np.ndarray) -> None:
    writer.write_tensor_data(data)


# ---- the file ---------------------------------------------------------------------------------------------------

def write_gguf(model, tokenizer, out: Path, type_name: str = "f16", name: str | None = None) -> Path:
    """Write `model` (a Llama-layout causal LM) and `tokenizer` to `out` as GGUF. Everything that could refuse
    the export is checked before the file is opened; a failure while writing leaves nothing at `out`."""
    export_type = EXPORT_TYPES.get(type_name)
    config = model.config
    check_exportable(config)
    state = model.state_dict()
    plan = plan_tensors(state, config, export_type)
    vocab_size = int(config.vocab_size)
    out = Path(out)
    with atomic_file(out) as tmp:
        writer = _Writer(tmp, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        try:
            write_model_metadata(writer, config, export_type, name or _model_name(config))
            write_tokenizer_metadata(writer, tokenizer, vocab_size)
            for planned in plan:
                shape, dtype = stored_shape(tuple(state[planned.source].shape), planned.qtype)
                nbytes = int(np.prod(shape)) * dtype.itemsize
                writer.add_tensor_info(planned.name, shape, dtype, nbytes, raw_dtype=planned.qtype)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for planned in plan:
                write_tensor(writer, tensor_data(state, planned))
        finally:
            writer.close()
    return out


def _model_name(config) -> str:
    """general.name; transformers reads a llama-arch GGUF back as Mistral only when the name says so."""
    base = Path(str(getattr(config, "name_or_path", "") or config.model_type)).name or config.model_type
    return base if config.model_type in base.lower() else f"{config.model_type}-{base}"


def exported_tensors(path: Path) -> Iterator[tuple[str, str, tuple[int, ...]]]:
    """(name, stored type, shape) of each tensor in a GGUF file, in file order."""
    for tensor in gguf.GGUFReader(str(path)).tensors:
        yield tensor.name, tensor.tensor_type.name, tuple(int(d) for d in tensor.shape)
