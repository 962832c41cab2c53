"""CPU meta-generation of LoRA adapters: a new task's adapter as a distance-weighted mix of a bank.

Pipeline: bank (`bank`) -> dataset representations (`histograms`) -> distances (`distances`) ->
coefficients (`coefficients`, learned `mlp` on the bank Gram matrix from `gram`) -> combined PEFT adapter
(`combine`); `cache` keeps histograms and distance matrices on disk.
"""

from lora_lab.meta.bank import Bank, BankMember, BankValidationError, load_bank
from lora_lab.meta.cache import ArrayCache
from lora_lab.meta.coefficients import COEFFICIENT_RULES, compute_coefficients, exclusion_mask
from lora_lab.meta.combine import COMBINE_MODES, predict_adapter
from lora_lab.meta.distances import DISTANCES, pairwise_distance
from lora_lab.meta.gram import bank_gram_matrix, reconstruction_error
from lora_lab.meta.histograms import REPRESENTATIONS, represent_dataset, token_histogram
from lora_lab.meta.mlp import train_mlp_transform

__all__ = [
    "ArrayCache",
    "Bank",
    "BankMember",
    "BankValidationError",
    "COEFFICIENT_RULES",
    "COMBINE_MODES",
    "DISTANCES",
    "REPRESENTATIONS",
    "bank_gram_matrix",
    "compute_coefficients",
    "exclusion_mask",
    "load_bank",
    "pairwise_distance",
    "predict_adapter",
    "reconstruction_error",
    "represent_dataset",
    "token_histogram",
    "train_mlp_transform",
]
