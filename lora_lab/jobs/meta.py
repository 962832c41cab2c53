"""Recipe `meta`: build an adapter for a dataset without gradients, from a bank of LoRAs.

bank → token histograms (cached) → distances target×bank (metric group) → coefficients (method.version,
leave-one-out or leave-source-out) → combined PEFT adapter (method.combine) → evaluation of the base model
and of the generated adapter on the target task. Timings are recorded per stage.

A label-free version (meta/coefficients.py) turns the distances into weights; whatever it needs from the bank
alone (mlp's transform, soup's k) is fitted first, without the target. A labelled version (meta/fewshot.py:
fewshot, lorahub, lorahub_prior, best_single) starts from a label-free prior (method.fewshot_prior) and scores
candidate weights on the first method.fewshot_count examples of the target's train split, with forward passes.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from lora_lab.jobs.context import JobContext
from lora_lab.jobs.recipe import recipe
from lora_lab.jobs.registry import JOBS
from lora_lab.jobs.steps import build_task, evaluate
from lora_lab.meta import (
    ArrayCache,
    compute_coefficients,
    exclusion_mask,
    load_bank,
    pairwise_distance,
    predict_adapter,
)
from lora_lab.meta.bank import check_bank_model
from lora_lab.meta.cache import bank_fingerprint
from lora_lab.meta.coefficients import COEFFICIENT_RULES, BankFit
from lora_lab.meta.fewshot import FewshotOptions, SearchResult, fewshot_coefficients
from lora_lab.meta.gram import bank_gram_matrix
from lora_lab.meta.mixture import BankMixture
from lora_lab.meta.mlp import train_mlp_transform
from lora_lab.meta.representation import Representer, task_from_reference
from lora_lab.meta.soup import choose_soup_k
from lora_lab.methods.adapter_files import check_shapes, inspect_adapter
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.structure import empty_model
from lora_lab.training.featurizers import featurizer_for

# The form a labelled search scores its candidates in: the one the adapter is written in (svd approximates the
# exact delta mixture; factors is LoraHub's composition).
SEARCH_FORM = {"delta": "delta", "svd": "delta", "factors": "factors"}


@contextmanager
def timed(timings: dict[str, float], stage: str):
    started = time.perf_counter()
    yield
    timings[f"time_{stage}_s"] = time.perf_counter() - started


def check_bank_layout(bank, cfg) -> None:
    """Members share their shapes (load_bank checks that); the first one must fit the model, known from its
    config alone where possible, so a bank of another base fails before the model loads."""
    layout = empty_model(cfg)
    if layout is not None:
        check_shapes(inspect_adapter(bank.members[0].adapter_dir, key="bank member"), layout, cfg.model.name)


# It trains nothing by gradient (no train.* but the sequence length a classifier head reads); the generated
# adapter is always evaluated (`after`), the base model only with eval.before.
@JOBS.register("meta")
@recipe("meta", result_stage="after",
        reads=("seed", "model.*", "task.*", "method.*", "metric.*", "hardware.device", "hardware.num_threads",
               "hardware.num_processes", "hardware.distributed_backend", "train.max_seq_len", "eval.before",
               "eval.batch_size", "eval.max_new_tokens", "eval.save_predictions"),
        never=("model.lora_targets",))
def meta_generate(ctx: JobContext) -> dict:
    cfg, mcfg = ctx.cfg, ctx.cfg.method
    timings: dict[str, float] = {}
    with timed(timings, "load_bank"):
        bank = load_bank(mcfg.bank_dir)
        check_bank_model(bank, cfg.model)
        check_bank_layout(bank, cfg)
    if mcfg.target:  # leave-one-out over the bank: the target is a member's own dataset
        target_index = bank.index(mcfg.target)
        target_member = bank.members[target_index]
        target_reference, target_task = dict(target_member.dataset), task_from_reference(target_member.dataset)
        target_name, target_source = target_member.name, target_member.source
    else:  # a new dataset: the configured task
        target_task = build_task(ctx)
        target_reference = OmegaConf.to_container(cfg.task)
        target_name, target_source = str(cfg.task.get("sni_task") or cfg.task.name), None
    eval_examples = target_task.eval_examples()

    with timed(timings, "load_model"):
        model, tokenizer = load_model_and_tokenizer(cfg)
    cache = ArrayCache(Path(mcfg.bank_dir) / ".cache")
    represent = Representer(cfg, tokenizer, cache)
    with timed(timings, "represent"):
        members = np.stack([represent(dict(m.dataset)) for m in bank.members])
        target = represent(target_reference, target_task)[None, :]
    options = {"epsilon": cfg.metric.kl_epsilon} if cfg.metric.name == "kl" else {}
    with timed(timings, "distances"):
        distances = pairwise_distance(cfg.metric.name, target, members, **options)
    by_source = mcfg.exclude == "source"
    exclude = exclusion_mask([target_name], bank.names, [target_source] if by_source else None,
                             bank.sources if by_source else None)

    # A labelled version starts from a label-free prior; the prior (or the version itself) may need a bank fit.
    label_free = mcfg.version if mcfg.version in COEFFICIENT_RULES else mcfg.fewshot_prior
    pool = [i for i in range(len(bank)) if not exclude[0, i]]  # the target (and its family) stay held out
    fit = fit_on_bank(ctx, bank, cache, members, label_free, pool, options, timings)
    with timed(timings, "coefficients"):
        coefficients = compute_coefficients(label_free, distances, exclude, mcfg.temperature, fit.transform,
                                            fit.soup_k)[0]
    found: SearchResult | None = None
    if mcfg.version not in COEFFICIENT_RULES:
        with timed(timings, "fewshot"):
            found = search_with_labels(ctx, model, tokenizer, bank, target_task, coefficients, ~exclude[0])
        coefficients = found.coefficients
    with timed(timings, "predict"):
        prediction = predict_adapter(bank.adapter_dirs, coefficients, ctx.adapter_dir, mode=mcfg.combine,
                                     top_k=mcfg.top_k, rank=mcfg.svd_rank,
                                     renormalize=found is None or found.mixture)

    metrics: dict[str, Any] = {"bank_size": len(bank), "target": target_name, "adapter_rank": prediction.rank,
                               "primary_metric": target_task.primary_metric}
    if label_free == "soup":
        metrics["soup_k"] = fit.soup_k
    if found is not None:
        metrics.update(fewshot_examples=mcfg.fewshot_count, fewshot_start_loss=found.start_loss,
                       fewshot_best_loss=found.best_loss, fewshot_evaluations=found.evaluations)
    order = np.argsort(-np.abs(coefficients), kind="stable")[:5]  # free (lorahub) weights may be negative
    for place, index in enumerate(order, 1):
        metrics[f"top{place}_member"] = bank.names[index]
        metrics[f"top{place}_coefficient"] = float(coefficients[index])
        metrics[f"top{place}_distance"] = float(distances[0, index])
    model.to(ctx.device)
    with timed(timings, "eval"):
        if cfg.eval.before:
            metrics.update(evaluate(ctx, model, tokenizer, target_task, eval_examples, "before"))
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(model, str(ctx.adapter_dir)).to(ctx.device)
        metrics.update(evaluate(ctx, tuned, tokenizer, target_task, eval_examples, "after"))
    metrics.update(timings)
    return metrics


def fit_on_bank(ctx: JobContext, bank, cache: ArrayCache, members: np.ndarray, version: str, pool: list[int],
                options: dict[str, Any], timings: dict[str, float]) -> BankFit:
    """What `version` learns from the bank alone, on the members the target may use (`pool`; `BANK_FITS`)."""
    fitter = BANK_FITS.get(version)
    if fitter is None or (version == "soup" and ctx.cfg.method.soup_k is not None):
        return BankFit(soup_k=ctx.cfg.method.soup_k)
    with timed(timings, version):
        gram_parts = {"kind": "gram", "members": bank_fingerprint(bank.names, bank.adapter_dirs)}
        gram = cache.get_or_compute(gram_parts, lambda: bank_gram_matrix(bank.adapter_dirs))
        bank_distances = pairwise_distance(ctx.cfg.metric.name, members, members, **options)
        return fitter(ctx, bank, bank_distances, gram, pool)


def fit_mlp(ctx: JobContext, bank, bank_distances: np.ndarray, gram: np.ndarray, pool: list[int]) -> BankFit:
    """The mlp version's distance transform, trained on the Gram matrix of the pool."""
    mcfg = ctx.cfg.method
    mlp_options = OmegaConf.to_container(mcfg.mlp) if mcfg.mlp else {}
    fit = train_mlp_transform(bank_distances, gram, pool, temperature=mcfg.temperature, seed=ctx.cfg.seed,
                              **mlp_options)
    return BankFit(transform=fit.transform)


def fit_soup(ctx: JobContext, bank, bank_distances: np.ndarray, gram: np.ndarray, pool: list[int]) -> BankFit:
    """AdapterSoup's k by the pool's own leave-one-out, each member excluded as the target is (meta/soup.py)."""
    sources = bank.sources if ctx.cfg.method.exclude == "source" else None
    exclude = exclusion_mask(bank.names, bank.names, sources, sources)
    return BankFit(soup_k=choose_soup_k(bank_distances, gram, pool, exclude).k)


# Label-free versions that learn something from the bank before seeing the target.
BANK_FITS = {"mlp": fit_mlp, "soup": fit_soup}


def search_with_labels(ctx: JobContext, model, tokenizer, bank, task, prior: np.ndarray,
                       allowed: np.ndarray) -> SearchResult:
    """The labelled version's coefficients: every bank member hooked beside the model, candidate weights scored by
    the answer loss of the target's first method.fewshot_count training examples."""
    cfg, mcfg = ctx.cfg, ctx.cfg.method
    featurize = featurizer_for(cfg.model.kind)
    features = [featurize(tokenizer, example, cfg.model.use_chat_template, cfg.train.max_seq_len)
                for example in task.train_examples()[:mcfg.fewshot_count]]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.to(ctx.device).eval()
    mixture = BankMixture(model, bank.adapter_dirs)
    try:
        return fewshot_coefficients(mcfg.version, model, mixture, features, prior, allowed, pad_id,
                                    FewshotOptions(candidates=mcfg.top_k, budget=mcfg.fewshot_budget,
                                                   seed=cfg.seed, l1=mcfg.fewshot_l1,
                                                   form=SEARCH_FORM[mcfg.combine]))
    finally:
        mixture.close()
