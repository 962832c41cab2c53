"""`method=meta`: gradient-free adapter generation from a bank (recipe in `lora_lab.jobs.meta`)."""

from dataclasses import dataclass, field

from omegaconf import DictConfig

from lora_lab.config.errors import ConfigError
from lora_lab.config.schema import choice, positive, ranged
from lora_lab.meta.distances import check_metric_for_representation
from lora_lab.methods.base import Method
from lora_lab.methods.registry import METHODS


@dataclass
class MetaMlpSchema:
    """The learned distance transform of version=mlp (meta/mlp.py): its width and how long it trains."""

    hidden: int = positive(16)
    steps: int = positive(300)
    learning_rate: float = ranged(0.01, gt=0)


# Versions that need no labelled target example (meta/coefficients.py COEFFICIENT_RULES) and those that read a
# few (meta/fewshot.py FEWSHOT_RULES); spelled here because meta/ imports this package (a test keeps them equal).
LABEL_FREE_VERSIONS = ("base", "normalized", "mlp", "uniform", "nearest", "soup")
FEWSHOT_VERSIONS = ("fewshot", "lorahub", "lorahub_prior", "best_single")


@dataclass
class MetaSchema:
    name: str = "meta"
    version: str = choice("normalized", *LABEL_FREE_VERSIONS, *FEWSHOT_VERSIONS)
    combine: str = choice("delta", "delta", "factors", "svd")
    representation: str = choice("tokens", "tokens", "embedding")
    bank_dir: str | None = None
    target: str | None = None  # bank member (or task) to generate for; null = the configured task
    temperature: float = ranged(1.0, gt=0)
    top_k: int = positive(8)
    svd_rank: int | None = positive(None)
    exclude: str = choice("self", "self", "source")  # leave-one-out or leave-source-out
    mlp: MetaMlpSchema = field(default_factory=lambda: MetaMlpSchema())  # version=mlp's learned transform
    soup_k: int | None = positive(None)  # version=soup's number of nearest members; null: chosen on the bank
    # The labelled versions: the first `fewshot_count` examples of the target's train split, `fewshot_budget` loss
    # evaluations, the L1 weight (null: the version's own, 0 for fewshot, LoraHub's 0.05 for lorahub*), and the
    # label-free version whose weights pick the candidates and start (and anchor) the search.
    fewshot_count: int = positive(5)
    fewshot_budget: int = positive(96)
    fewshot_l1: float | None = ranged(None, ge=0)
    fewshot_prior: str = choice("normalized", *LABEL_FREE_VERSIONS)


@METHODS.option
class MetaMethod(Method):
    kind = "meta"
    schema = MetaSchema

    @classmethod
    def check(cls, cfg: DictConfig) -> None:
        if cfg.method.bank_dir is None:
            raise ConfigError("method.bank_dir", None, "meta-generation needs a bank (a folder with bank.json): build "
                              "a mini one in minutes with `lora-lab -m experiment=meta_minibank`, then see "
                              "docs/meta_generation.md")
        check_metric_for_representation(cfg.metric.name, cfg.method.representation)
