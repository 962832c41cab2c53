"""`method=qlora`: LoRA on a 4-bit base (NF4 + double quantisation through bitsandbytes' BitsAndBytesConfig).

The base is quantised while loading (`model_load_kwargs`), `prepare_model_for_kbit_training` readies it (frozen
base, float32 norms and embeddings, input grads), then the same LoraConfig as `method=lora` goes on top. Compute
runs in `hardware.precision`. bitsandbytes runs 4-bit layers on CPU as well as CUDA.

On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit layer the first time it runs in eval mode without
grad (a bf16 inference kernel) and, once repacked, the layer no longer passes gradients to its input: QLoRA
after the recipe's "before" evaluation would silently train on partial gradients. `prepare_loaded` (right
after loading) turns that fast path off, so every 4-bit layer stays on the exact float dequantise + matmul
path for evaluation and training alike.

The adapter is a standard peft LoRA adapter. `merge_adapter` folds it into a *dequantised* base (float weights
W_deq + scale·B·A): re-quantising after the merge would add a second rounding, so the merged model reproduces
the trained 4-bit model's outputs instead of drifting from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import get_peft_model, prepare_model_for_kbit_training
from transformers import BitsAndBytesConfig

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import choice
from lora_lab.methods.adapters import ADAPTER_FORMATS, AdapterFormat, method_record
from lora_lab.methods.lora import LoraMethod, LoraSchema, head_to_save, lora_config, peft_task_type
from lora_lab.methods.registry import METHODS
from lora_lab.models import DTYPES
from lora_lab.models.kinds import kind_of
from lora_lab.models.structure import empty_model, head_modules

# Inits that need full-precision base weights (PiSSA/orthogonal fail on 4-bit ones) or rewrite the quantised
# base (OLoRA: the adapter would not fit an untouched 4-bit model).
QUANTISED_INITS = ("default", "gaussian")
# Classifier heads kept in float when the layout is unknown before loading (a GGUF base): the usual names
HEAD_NAMES = ["classifier", "pre_classifier", "score"]


@dataclass
class QloraSchema(LoraSchema):
    name: str = "qlora"
    quant_type: str = choice("nf4", "nf4", "fp4")
    double_quant: bool = True  # also quantise the quantisation constants (~0.4 bit/param saved)


def quantization_config(cfg, skip_modules: list[str] | None = None) -> BitsAndBytesConfig:
    """`skip_modules`: stay in float (a classifier's fresh head: it is trained in full and saved)."""
    return BitsAndBytesConfig(
        llm_int8_skip_modules=skip_modules or None,
        load_in_4bit=True,
        bnb_4bit_quant_type=str(cfg.method.quant_type),
        bnb_4bit_use_double_quant=bool(cfg.method.double_quant),
        bnb_4bit_compute_dtype=DTYPES[cfg.hardware.precision],
    )


def classifier_head(cfg) -> list[str] | None:
    """A classifier's head, read from the layout before loading: quantising it would turn fresh weights into
    4-bit storage that is neither trainable nor loadable (the head is trained in full and saved instead)."""
    if not kind_of(cfg).has_head:
        return None
    skeleton = empty_model(cfg)
    return head_modules(skeleton, cfg.model.kind) if skeleton is not None else HEAD_NAMES


def keep_4bit_trainable(model: torch.nn.Module) -> torch.nn.Module:
    """Turn off bitsandbytes' CPU bf16 inference repacking (see the module docstring); undo it where it ran."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            weight = module.weight
            if getattr(weight.quant_state, "packing_format_for_cpu", False):
                weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, weight.quant_state)
    return model


def unpacked_numel(param: torch.nn.Parameter) -> int:
    """A 4-bit weight stores two values per byte; its quant state knows the real shape."""
    state = getattr(param, "quant_state", None)
    return state.shape.numel() if state is not None else param.numel()


@METHODS.option
class QloraMethod(LoraMethod):
    supports_fsdp = False
    schema = QloraSchema
    adapter_format = "peft_4bit"

    @classmethod
    def check(cls, cfg) -> None:
        super().check(cfg)  # LoRA's own rules first
        if cfg.method.init_lora_weights not in QUANTISED_INITS:
            raise ConfigError("method.init_lora_weights", cfg.method.init_lora_weights,
                              "cannot initialise from 4-bit base weights", choices=QUANTISED_INITS)

    def model_load_kwargs(self) -> dict[str, Any]:
        return {"quantization_config": quantization_config(self.cfg, classifier_head(self.cfg))}

    def prepare_loaded(self, model: torch.nn.Module) -> torch.nn.Module:
        return keep_4bit_trainable(model)

    def place(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        return model  # 4-bit storage stays where bitsandbytes laid it out on load

    def apply(self, model: torch.nn.Module) -> torch.nn.Module:
        model = prepare_model_for_kbit_training(
            keep_4bit_trainable(model), use_gradient_checkpointing=bool(self.cfg.train.gradient_checkpointing)
        )
        heads = head_to_save(self.cfg, model)
        self._model = get_peft_model(model, lora_config(self.mcfg, peft_task_type(self.cfg), heads))
        return self._model

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        # The recipe's count sees packed 4-bit storage (half the values); report the real parameter count.
        return {"total_params": sum(unpacked_numel(p) for p in model.parameters()), "base_weight_bits": 4}

    def record(self) -> dict[str, Any]:
        q = quantization_config(self.cfg)
        base = {"load_in_4bit": True, "quant_type": q.bnb_4bit_quant_type,
                "double_quant": q.bnb_4bit_use_double_quant, "compute_dtype": str(self.cfg.hardware.precision),
                "skip_modules": classifier_head(self.cfg) or []}
        return method_record(self.cfg, self.adapter_format, base_quantization=base)


@torch.no_grad()
def merged_weight(layer: torch.nn.Module, adapter: str) -> torch.Tensor:
    """peft's own 4-bit merge arithmetic (plain LoRA or a variant such as DoRA), stopped before re-quantising."""
    from peft.utils.integrations import dequantize_bnb_weight

    weight = layer.get_base_layer().weight
    quant_state = getattr(weight, "quant_state", None)
    dense = dequantize_bnb_weight(weight, state=quant_state) if quant_state is not None else weight.detach().clone()
    if adapter in layer.lora_variant:
        return layer.lora_variant[adapter].merge_safe(layer, adapter, dense)
    return dense + layer.get_delta_weight(adapter)


def dequantised_merge(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """Every LoRA layer becomes W_deq + ΔW, every other 4-bit layer W_deq, every module trained in full and
    saved with the adapter (a classifier head) its trained copy: a plain float model.

    `unload()` strips the adapter without merging, and since peft 0.22 that also puts back the *original*
    modules_to_save (the untrained head); the trained copies are taken before unloading and set back after."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    merged = {
        name.removeprefix("base_model.model."): merged_weight(module, module.active_adapters[0])
        for name, module in model.named_modules() if isinstance(module, LoraLayer)
    }
    trained_copies = {
        name.removeprefix("base_model.model."): module.modules_to_save[module.active_adapters[0]]
        for name, module in model.named_modules() if isinstance(module, ModulesToSaveWrapper)
    }
    base = model.unload()
    if getattr(base, "is_loaded_in_4bit", False):
        base = base.dequantize()
    for name, module in trained_copies.items():
        base.set_submodule(name, module)
    with torch.no_grad():
        for name, weight in merged.items():
            target = base.get_submodule(name).weight
            target.copy_(weight.to(target.dtype))
    return base


def _load_on_4bit(base: torch.nn.Module, folder: Path) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(keep_4bit_trainable(base), str(folder))


def recorded_quantization(record: dict[str, Any]) -> dict[str, Any]:
    """The 4-bit base the adapter was trained on, as its record describes it (NF4 + double quant by default)."""
    base = record.get("base_quantization") or {}
    return {"quantization_config": BitsAndBytesConfig(
        llm_int8_skip_modules=list(base.get("skip_modules") or []) or None,
        load_in_4bit=True,
        bnb_4bit_quant_type=str(base.get("quant_type", "nf4")),
        bnb_4bit_use_double_quant=bool(base.get("double_quant", True)),
        bnb_4bit_compute_dtype=DTYPES.get(str(base.get("compute_dtype", "float32")), torch.float32),
    )}


ADAPTER_FORMATS.add("peft_4bit", AdapterFormat(load=_load_on_4bit, merge=dequantised_merge,
                                               base=recorded_quantization))
