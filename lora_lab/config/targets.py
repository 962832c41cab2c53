"""Method target names → the model family's module names, so one method config fits every architecture.

Method configs name their targets with Llama's projection names (`q_proj`, `k_proj`, `v_proj`, `o_proj`,
`gate_proj`, `up_proj`, `down_proj`). A model config's `lora_targets` maps those names to its family's own
(DistilBERT: `q_proj → q_lin`, …; null: the family has no such projection, the name is dropped). Names that
are not keys pass through unchanged, so `method.target_modules=[q_lin,v_lin]` works as written.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def family_targets(names: list[str], mapping: dict[str, str | None]) -> list[str]:
    out: list[str] = []
    for name in names:
        mapped = mapping.get(name, name)
        if mapped is not None and mapped not in out:
            out.append(mapped)
    return out


def translate_method_targets(cfg: DictConfig) -> None:
    """Rewrite `method.target_modules` in place (before the config is made read-only)."""
    if cfg.method.get("target_modules") is None or not cfg.model.get("lora_targets"):
        return
    mapping = OmegaConf.to_container(cfg.model.lora_targets)
    cfg.method.target_modules = family_targets(list(OmegaConf.to_container(cfg.method.target_modules)), mapping)
