"""Coefficient rules: distances D[target, member] -> convex weights over the bank.

All rules are leave-one-out: an exclusion mask removes the target itself (or, for leave-source-out, every
member that shares its source dataset) before weights are formed, so a bank task is never predicted from
its own adapter. `base`, `normalized` and `mlp` are the paper's three versions (softmin of the raw,
row-z-scored, and learned-transformed distances); `uniform` and `nearest` are baselines, and `soup` is
AdapterSoup's (Chronopoulou et al. 2023) uniform average of the k nearest members.

Every rule here needs no labelled target example: distances, and what was fitted on the bank alone before the
target is seen (`BankFit`: mlp's transform, soup's k). The rules that read labels live in `fewshot.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lora_lab.config.errors import ConfigError
from lora_lab.registry import Registry

DistanceTransform = Callable[[np.ndarray], np.ndarray]  # elementwise map applied to z-scored distances


@dataclass(frozen=True)
class BankFit:
    """What a rule learned on the bank alone, before the target is seen: the `mlp` version's distance transform
    (`mlp.train_mlp_transform`), AdapterSoup's number of members (`soup.choose_soup_k`)."""

    transform: DistanceTransform | None = None
    soup_k: int | None = None


CoefficientRule = Callable[[np.ndarray, np.ndarray, float, BankFit], np.ndarray]

COEFFICIENT_RULES: Registry[CoefficientRule] = Registry("coefficient version", "method.version")
PAPER_VERSIONS: tuple[str, ...] = ("base", "normalized", "mlp")


def exclusion_mask(
    target_names: Sequence[str],
    member_names: Sequence[str],
    target_sources: Sequence[str | None] | None = None,
    member_sources: Sequence[str | None] | None = None,
) -> np.ndarray:
    """(n_targets, n_members) bool, True = excluded: the same task, or (when sources are given) any member
    whose non-empty source equals the target's - leave-source-out for tasks derived from one dataset."""
    excluded = (
        np.asarray(target_names, dtype=object)[:, None] == np.asarray(member_names, dtype=object)[None, :]
    )
    if target_sources is not None and member_sources is not None:
        targets = np.asarray([s or None for s in target_sources], dtype=object)[:, None]
        members = np.asarray([s or None for s in member_sources], dtype=object)[None, :]
        excluded |= (targets == members) & (targets != None)  # noqa: E711 - elementwise comparison
    return excluded


def softmin(scores: np.ndarray, allowed: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of -scores / temperature over allowed entries; excluded entries get exactly 0."""
    logits = np.where(allowed, -scores / temperature, -np.inf)
    logits -= logits.max(axis=1, keepdims=True)  # stable: the best allowed member has logit 0
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def zscore_rows(distances: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Standardise each row over its allowed members only (the excluded target would skew mean and std).

    A row whose allowed distances are all equal has no preference and maps to zeros (uniform weights).
    Excluded entries are set to 0; they are masked out again by the softmin.
    """
    count = allowed.sum(axis=1, keepdims=True)
    masked = np.where(allowed, distances, 0.0)
    mean = masked.sum(axis=1, keepdims=True) / count
    variance = (np.where(allowed, distances - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / count
    std = np.sqrt(variance)
    z = np.where(std > 0, (distances - mean) / np.where(std > 0, std, 1.0), 0.0)
    return np.where(allowed, z, 0.0)


@COEFFICIENT_RULES.register("base")
def base_coefficients(
    distances: np.ndarray, allowed: np.ndarray, temperature: float, fit: BankFit
) -> np.ndarray:
    """softmin(D / T): weights depend on the metric's raw scale (e.g. JS <= ln 2 gives near-uniform)."""
    return softmin(distances, allowed, temperature)


@COEFFICIENT_RULES.register("normalized")
def normalized_coefficients(
    distances: np.ndarray, allowed: np.ndarray, temperature: float, fit: BankFit
) -> np.ndarray:
    """softmin(z / T) with z the row-z-scored distances: scale-free across metrics and targets."""
    return softmin(zscore_rows(distances, allowed), allowed, temperature)


@COEFFICIENT_RULES.register("mlp")
def mlp_coefficients(
    distances: np.ndarray, allowed: np.ndarray, temperature: float, fit: BankFit
) -> np.ndarray:
    """softmin(f(z) / T) with f learned on training tasks (see `lora_lab.meta.mlp.train_mlp_transform`)."""
    if fit.transform is None:
        raise ConfigError(
            "method.version",
            "mlp",
            "needs a trained transform (train_mlp_transform) - none was given",
        )
    return softmin(
        np.asarray(fit.transform(zscore_rows(distances, allowed)), dtype=np.float64), allowed, temperature
    )


@COEFFICIENT_RULES.register("uniform")
def uniform_coefficients(
    distances: np.ndarray, allowed: np.ndarray, temperature: float, fit: BankFit
) -> np.ndarray:
    """Plain average of every allowed member: the 'distances carry no information' baseline."""
    return allowed / allowed.sum(axis=1, keepdims=True)


@COEFFICIENT_RULES.register("nearest")
def nearest_coefficients(
    distances: np.ndarray, allowed: np.ndarray, temperature: float, fit: BankFit
) -> np.ndarray:
    """One-hot on the closest allowed member (ties: lowest index) - the 'reuse one adapter' baseline."""
    nearest = np.argmin(np.where(allowed, distances, np.inf), axis=1)
    weights = np.zeros(distances.shape, dtype=np.float64)
    weights[np.arange(distances.shape[0]), nearest] = 1.0
    return weights


@COEFFICIENT_RULES.register("soup")
def soup_coefficients(
    distances: np.ndarray, allowed: np.ndarray, temperature: float, fit: BankFit
) -> np.ndarray:
    """AdapterSoup: the plain average of the k closest allowed members (ties: lowest index); k is chosen on the
    bank, never on the target (`soup.choose_soup_k`), and capped at the number of allowed members."""
    if fit.soup_k is None or fit.soup_k < 1:
        raise ConfigError("method.soup_k", fit.soup_k, "soup needs k >= 1: set it, or leave it null so that it "
                          "is chosen on the bank (soup.choose_soup_k)")
    weights = np.zeros(distances.shape, dtype=np.float64)
    for row in range(distances.shape[0]):
        candidates = np.flatnonzero(allowed[row])
        order = candidates[np.argsort(distances[row, candidates], kind="stable")]
        kept = order[:fit.soup_k]
        weights[row, kept] = 1.0 / len(kept)
    return weights


def compute_coefficients(
    version: str,
    distances: np.ndarray,
    exclude: np.ndarray | None = None,
    temperature: float = 1.0,
    transform: DistanceTransform | None = None,
    soup_k: int | None = None,
) -> np.ndarray:
    """(n_targets, n_members) weights; each row sums to 1 and is 0 wherever `exclude` is True. `transform` is
    the `mlp` version's fitted transform, `soup_k` the `soup` rule's number of members (both fitted on the bank)."""
    rule = COEFFICIENT_RULES.get(version)
    distances = np.asarray(distances, dtype=np.float64)
    if distances.ndim != 2:
        raise ValueError(f"distances must be an (n_targets, n_members) matrix, got shape {distances.shape}")
    if not temperature > 0:
        raise ConfigError("method.temperature", temperature, "must be > 0")
    allowed = np.ones(distances.shape, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if allowed.shape != distances.shape:
        raise ValueError(f"exclusion mask has shape {allowed.shape}, distances {distances.shape}")
    empty = np.flatnonzero(~allowed.any(axis=1))
    if empty.size:
        raise ValueError(f"target rows {empty.tolist()[:10]} exclude every bank member; nothing to combine")
    if not np.isfinite(distances[allowed]).all():
        raise ValueError("distances must be finite on allowed entries (with metric=kl, set metric.kl_epsilon > 0)")
    return rule(distances, allowed, float(temperature), BankFit(transform, soup_k))
