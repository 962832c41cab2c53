"""The meta-generation study on a bank: every setting and baseline, every held-out target, one model load.

For each target member of the bank and each protocol (leave-one-out, leave-source-out), the 12 published
settings (versions base/normalized/mlp x metrics wd/kl/js/mmd) and the baselines uniform average, nearest
member and AdapterSoup (one per metric; soup's k chosen on the bank without the target) are turned into adapters
and scored on the target's eval split; the base model (no adapter) and the target's own adapter (oracle) are
scored once per target. With `--fewshot N` the labelled settings (`FEWSHOT_SETTINGS`: the project's search,
LoraHub's, the best single member) search on the target's first N training examples; with `--arrow`, Arrow's
per-token routing over the allowed members is scored too (no adapter file: the bank is hooked beside the model).
Identical coefficient vectors (in the same form) are evaluated once. `lora-lab -m experiment=meta_grid` runs the same settings as separate jobs; this loop exists
because a table over many targets would otherwise reload the model and the bank thousands of times.

    python -m lora_lab.meta.study <bank dir> --targets task1146_country_capital,... --eval-limit 20 \\
        --out study.json -- model=smollm2_135m eval.max_new_tokens=32
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from lora_lab.config.compose import compose_config
from lora_lab.config.errors import ConfigError, exit_on_input_error
from lora_lab.config.validate import validate_config
from lora_lab.evaluation import EVALUATORS
from lora_lab.meta.bank import check_bank_model, load_bank
from lora_lab.meta.cache import ArrayCache, bank_fingerprint
from lora_lab.meta.coefficients import PAPER_VERSIONS, compute_coefficients, exclusion_mask
from lora_lab.meta.combine import predict_adapter
from lora_lab.meta.distances import pairwise_distance
from lora_lab.meta.gram import bank_gram_matrix
from lora_lab.meta.mlp import train_mlp_transform
from lora_lab.meta.representation import Representer, task_from_reference
from lora_lab.meta.soup import choose_soup_k
from lora_lab.models import load_model_and_tokenizer
from lora_lab.utils.io import atomic_write_json

METRICS = ("wd", "kl", "js", "mmd")
PROTOCOLS = {"loo": False, "lso": True}  # protocol -> exclude the target's source siblings too
# Labelled settings: name -> (version in fewshot.FEWSHOT_RULES, the form its candidates are scored and written in:
# a BankMixture form and the method.combine mode of the same name). `fewshot/search` in LoraHub's factor form
# separates the effect of the form from that of LoraHub's objective.
FEWSHOT_SETTINGS = {
    "fewshot/search": ("fewshot", "delta"),
    "fewshot/search_factors": ("fewshot", "factors"),
    "fewshot/lorahub": ("lorahub", "factors"),
    "fewshot/lorahub_prior": ("lorahub_prior", "factors"),
    "fewshot/best_single": ("best_single", "delta"),
}
FEWSHOT_PRIOR = "normalized/js"  # the label-free setting that ranks the candidates and starts the searches
ARROW = "arrow"  # Arrow's per-token routing over the allowed members: scored, never written as an adapter


def compose_study_config(overrides: list[str]):
    """The root config with `method=meta` and the user's overrides, validated like a job's."""
    return validate_config(compose_config(["method=meta", *overrides]))


def settings_for(distances: dict[str, np.ndarray], mask: np.ndarray, transforms: dict[str, Any],
                 temperature: float, soup_ks: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Setting name -> coefficient row over the bank for one target and protocol. An `embedding` entry in
    `distances` (cosine distance of mean sentence embeddings) adds the representation beyond the paper;
    `soup_ks` (representation -> k chosen on the bank, `bank_soup_ks`) adds AdapterSoup's rows; `mlp` rows come
    for the metrics `transforms` has (a study without mlp settings fits none)."""
    rows = {}
    if "embedding" in distances:
        rows["normalized/embedding"] = compute_coefficients("normalized", distances["embedding"], mask,
                                                            temperature)[0]
        rows["nearest/embedding"] = compute_coefficients("nearest", distances["embedding"], mask)[0]
    for version in PAPER_VERSIONS:
        for metric in METRICS:
            if version == "mlp" and metric not in transforms:
                continue
            transform = transforms.get(metric) if version == "mlp" else None
            rows[f"{version}/{metric}"] = compute_coefficients(
                version, distances[metric], mask, temperature, transform)[0]
    rows["uniform"] = compute_coefficients("uniform", distances["js"], mask)[0]
    for metric in METRICS:
        rows[f"nearest/{metric}"] = compute_coefficients("nearest", distances[metric], mask)[0]
    for name, k in (soup_ks or {}).items():
        rows[f"soup/{name}"] = compute_coefficients("soup", distances[name], mask, soup_k=k)[0]
    return rows


def bank_soup_ks(bank_distances: dict[str, np.ndarray], gram: np.ndarray, pool: list[int],
                 bank_exclude: np.ndarray) -> dict[str, int]:
    """AdapterSoup's k per representation, chosen on the members a target may use (`pool`: never the target),
    each pseudo-target excluded as the target is (`bank_exclude`, bank x bank; meta/soup.py)."""
    return {name: choose_soup_k(d, gram, pool, bank_exclude).k for name, d in bank_distances.items()}


def setting_names(embedding: bool, fewshot: bool = False, arrow: bool = False) -> list[str]:
    """Every setting `settings_for` produces, then the labelled ones and Arrow when asked for (the base model and
    the oracle are always scored besides)."""
    names = [f"{version}/{metric}" for version in PAPER_VERSIONS for metric in METRICS]
    names += ["uniform", *(f"nearest/{metric}" for metric in METRICS), *(f"soup/{metric}" for metric in METRICS)]
    names += ["normalized/embedding", "nearest/embedding", "soup/embedding"] if embedding else []
    return names + (list(FEWSHOT_SETTINGS) if fewshot else []) + ([ARROW] if arrow else [])


def coefficient_key(coefficients: np.ndarray, form: str = "delta") -> str:
    return hashlib.sha1(form.encode() + np.round(coefficients, 6).tobytes()).hexdigest()


def summarise(rows: list[dict[str, Any]], metric_names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean of each score over targets, per (protocol, setting)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[f"{row['protocol']}|{row['setting']}"].append(row)
    table = {}
    for key, group in sorted(grouped.items()):
        table[key] = {name: float(np.mean([r[name] for r in group])) for name in metric_names if name in group[0]}
        table[key]["targets"] = len(group)
    return table


def run_study(bank_dir: Path, targets: list[str], overrides: list[str], eval_limit: int | None,
              combine: str = "delta", out: Path | None = None, embedding: bool = False,
              only: list[str] | None = None, fewshot: int = 0, arrow: bool = False) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from lora_lab.meta.fewshot import FewshotOptions, fewshot_coefficients
    from lora_lab.meta.mixture import BankMixture
    from lora_lab.training.featurizers import featurizer_for

    known = setting_names(embedding, fewshot > 0, arrow)
    unknown_settings = sorted(set(only or ()) - set(known))
    if unknown_settings:
        raise ConfigError("--settings", unknown_settings, "unknown settings", choices=known)
    cfg = compose_study_config([f"method.bank_dir={bank_dir}", *overrides])
    bank = load_bank(bank_dir)
    check_bank_model(bank, cfg.model)
    unknown = [t for t in targets if t not in bank.names]
    if unknown:
        raise ConfigError("--targets", unknown, "not bank members", choices=bank.names)
    timings: dict[str, float] = defaultdict(float)
    started = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(cfg)
    model.eval()
    timings["load_model_s"] = time.perf_counter() - started

    started = time.perf_counter()
    cache = ArrayCache(Path(bank_dir) / ".cache")
    represent = Representer(cfg, tokenizer, cache)
    histograms = np.stack([represent(dict(m.dataset)) for m in bank.members])
    bank_distances = {m: pairwise_distance(m, histograms, histograms) for m in METRICS}
    if embedding:  # mean MiniLM sentence embeddings, cosine distance
        from omegaconf import OmegaConf

        embedded_cfg = OmegaConf.merge(cfg, {"method": {"representation": "embedding"}})
        embed = Representer(embedded_cfg, tokenizer, cache)
        vectors = np.stack([embed(dict(m.dataset)) for m in bank.members])
        bank_distances["embedding"] = pairwise_distance("cosine", vectors, vectors)
    gram = cache.get_or_compute({"kind": "gram", "members": bank_fingerprint(bank.names, bank.adapter_dirs)},
                                lambda: bank_gram_matrix(bank.adapter_dirs))
    timings["distances_and_gram_s"] = time.perf_counter() - started

    rows: list[dict[str, Any]] = []
    device = torch.device("cpu")
    scratch_dir = tempfile.TemporaryDirectory(prefix="meta-study-")  # each predicted adapter lives until scored
    scratch = Path(scratch_dir.name)
    wanted = lambda name: not only or name in only  # noqa: E731
    needs_mlp = any(wanted(f"mlp/{metric}") for metric in METRICS)
    fewshot_names = [name for name in FEWSHOT_SETTINGS if fewshot > 0 and wanted(name)]
    score_arrow = arrow and wanted(ARROW)
    mixture = BankMixture(model, bank.adapter_dirs) if fewshot_names or score_arrow else None
    featurize = featurizer_for(cfg.model.kind)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bank_masks = {protocol: exclusion_mask(bank.names, bank.names, bank.sources if by_source else None,
                                           bank.sources if by_source else None)
                  for protocol, by_source in PROTOCOLS.items()}

    def score(task, examples, adapter_dir: Path | None, desc: str = "base") -> dict[str, float]:
        evaluated = model if adapter_dir is None else PeftModel.from_pretrained(model, str(adapter_dir))
        started = time.perf_counter()
        result = EVALUATORS.get(task.eval_mode)(evaluated, tokenizer, task, examples, cfg, device,
                                                desc=adapter_dir.name if adapter_dir else desc)
        timings["eval_s"] += time.perf_counter() - started
        timings["evals"] += 1
        if adapter_dir is not None:
            evaluated.unload()  # the base weights stay untouched: LoRA layers are removed, not merged
        return dict(result.metrics)

    for target in targets:
        index = bank.index(target)
        member = bank.members[index]
        task = task_from_reference(dict(member.dataset))
        examples = task.eval_examples()[:eval_limit]
        shots = [featurize(tokenizer, ex, cfg.model.use_chat_template, cfg.train.max_seq_len)
                 for ex in task.train_examples()[:fewshot]] if fewshot_names else []
        fixed = {"base": score(task, examples, None), "oracle": score(task, examples, bank.adapter_dirs[index])}
        for protocol, by_source in PROTOCOLS.items():
            mask = exclusion_mask([target], bank.names, [member.source] if by_source else None,
                                  bank.sources if by_source else None)
            train = [i for i in range(len(bank)) if not mask[0, i]]
            started = time.perf_counter()
            transforms = {m: train_mlp_transform(bank_distances[m], gram, train, temperature=cfg.method.temperature,
                                                 seed=cfg.seed, **dict(cfg.method.mlp)).transform
                          for m in METRICS} if needs_mlp else {}
            timings["mlp_s"] += time.perf_counter() - started
            soup_ks = bank_soup_ks({name: d for name, d in bank_distances.items() if wanted(f"soup/{name}")},
                                   gram, train, bank_masks[protocol])
            settings = settings_for({m: d[index:index + 1] for m, d in bank_distances.items()}, mask, transforms,
                                    cfg.method.temperature, soup_ks)
            forms = dict.fromkeys(settings, combine)
            mixtures = dict.fromkeys(settings, True)  # False: free weights, written as they are
            for name in fewshot_names:
                version, form = FEWSHOT_SETTINGS[name]
                started = time.perf_counter()
                found = fewshot_coefficients(version, model, mixture, shots, settings[FEWSHOT_PRIOR], ~mask[0],
                                             pad_id, FewshotOptions(candidates=cfg.method.top_k,
                                                                    budget=cfg.method.fewshot_budget, seed=cfg.seed,
                                                                    l1=cfg.method.fewshot_l1, form=form))
                timings["fewshot_s"] += time.perf_counter() - started
                settings[name], forms[name], mixtures[name] = found.coefficients, form, found.mixture
            if only:
                settings = {name: c for name, c in settings.items() if name in only}
            evaluated: dict[str, dict[str, float]] = {}
            for setting, coefficients in settings.items():
                key = coefficient_key(coefficients, forms[setting])
                if key not in evaluated:
                    adapter = scratch / f"{target}-{key[:10]}"
                    started = time.perf_counter()
                    predict_adapter(bank.adapter_dirs, coefficients, adapter, mode=forms[setting],
                                    top_k=cfg.method.top_k, renormalize=mixtures[setting])
                    timings["predict_s"] += time.perf_counter() - started
                    evaluated[key] = score(task, examples, adapter)
                    shutil.rmtree(adapter)
                top = int(np.argmax(np.abs(coefficients)))
                rows.append({"target": target, "protocol": protocol, "setting": setting, **evaluated[key],
                             "top_member": bank.names[top], "top_coefficient": float(coefficients[top])})
            if score_arrow:  # the allowed members, routed per token: no single member is "top"
                mixture.set_rows((~mask).astype(np.float32), ARROW)
                try:
                    routed = score(task, examples, None, desc=ARROW)
                finally:
                    mixture.set_rows(None)
                rows.append({"target": target, "protocol": protocol, "setting": ARROW, **routed,
                             "top_member": None, "top_coefficient": None})
            for name, scores in fixed.items():
                rows.append({"target": target, "protocol": protocol, "setting": name, **scores})
        print(f"{target}: base {fixed['base']}, oracle {fixed['oracle']}", flush=True)
        if out is not None:  # progress survives an interruption
            atomic_write_json(out, {"rows": rows, "timings": dict(timings)})
    scratch_dir.cleanup()
    if mixture is not None:
        mixture.close()

    metric_names = tuple(k for k in rows[0] if k not in {"target", "protocol", "setting", "top_member",
                                                        "top_coefficient"})
    result = {"bank": str(bank_dir), "bank_size": len(bank), "targets": targets, "combine": combine,
              "eval_limit": eval_limit, "overrides": overrides, "rows": rows,
              "summary": summarise(rows, metric_names), "timings": dict(timings)}
    if out is not None:
        atomic_write_json(out, result)
    return result


def markdown_table(result: dict[str, Any], scores: tuple[str, ...] = ("rougeL", "exact_match")) -> str:
    """Rows: settings; columns: each score under each protocol."""
    summary = result["summary"]
    settings = sorted({key.split("|", 1)[1] for key in summary},
                      key=lambda s: (s not in ("base",), s == "oracle", s))
    header = "| setting | " + " | ".join(f"{s} {p.upper()}" for p in PROTOCOLS for s in scores) + " |"
    lines = [header, "|" + "---|" * (1 + len(PROTOCOLS) * len(scores))]
    for setting in settings:
        cells = [f"{summary.get(f'{p}|{setting}', {}).get(s, float('nan')):.3f}" for p in PROTOCOLS for s in scores]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bank_dir", type=Path)
    parser.add_argument("--targets", default=None, help="comma-separated member names (default: every member)")
    parser.add_argument("--eval-limit", type=int, default=None, help="eval examples per target")
    parser.add_argument("--combine", default="delta", help="method.combine mode for every setting")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (rows, summary, timings)")
    parser.add_argument("--embedding", action="store_true", help="also rank members by MiniLM embeddings")
    parser.add_argument("--settings", default=None, help="comma-separated subset, e.g. normalized/js,uniform "
                        "(base model and oracle are always scored)")
    parser.add_argument("--fewshot", type=int, default=0, help="labelled target examples for the few-shot "
                        "settings (fewshot/*; 0: not scored)")
    parser.add_argument("--arrow", action="store_true", help="also score Arrow's per-token routing")
    parser.epilog = "Config overrides go after `--`, e.g. `-- model=smollm2_135m eval.max_new_tokens=32`."
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:split]), argv[split + 1:]

    with exit_on_input_error("lora_lab.meta.study"):
        targets = args.targets.split(",") if args.targets else load_bank(args.bank_dir).names
        result = run_study(args.bank_dir, targets, overrides, args.eval_limit, args.combine, args.out,
                           args.embedding, args.settings.split(",") if args.settings else None, args.fewshot,
                           args.arrow)
    print(markdown_table(result))


if __name__ == "__main__":
    main()
