"""The meta-generation study at bank scale: 12 published settings + the field's baselines (uniform, nearest,
AdapterSoup, LoraHub's search and its best-single control, Arrow routing) + the project's few-shot search,
leave-one-out and leave-source-out, at several nested bank sizes, with bootstrap confidence intervals over targets.

For each held-out target every coefficient vector (all settings, both protocols, every bank size, the base model
as the zero vector and the oracle as the target's own adapter) is scored in ONE batched generation through a
`BankMixture` (each batch row carries its own mixture of the bank's LoRAs, in its own form: the `delta`
combination after the same top-k selection that `predict_adapter` applies, LoraHub's `factors` composition for
the LoraHub rows, Arrow's per-token routing over the allowed members for `arrow`). Per setting: mean Rouge-L and
exact match, a bootstrap 95 % CI over targets, and the recovery fraction (meta - base) / (oracle - base) with its
CI. AdapterSoup's k is chosen per target and protocol on the members it may use (meta/soup.py), never on it;
the labelled settings (`fewshot/*`) search on the target's first `--fewshot` training examples at the full bank
size only.

    python benchmarks/meta_study_bank64.py <bank dir> --out benchmarks/results/meta_study_bank64.json \\
        -- task.data_dir=<data>/sni665 eval.batch_size=512 hardware=gpu hardware.precision=float32

Progress is written after every target; rerunning with the same --out continues with the targets not yet done.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_lab.meta.bank import check_bank_model, load_bank  # noqa: E402
from lora_lab.meta.cache import ArrayCache, bank_fingerprint  # noqa: E402
from lora_lab.meta.coefficients import PAPER_VERSIONS, exclusion_mask  # noqa: E402
from lora_lab.meta.combine import select_members  # noqa: E402
from lora_lab.meta.distances import pairwise_distance  # noqa: E402
from lora_lab.meta.gram import bank_gram_matrix  # noqa: E402
from lora_lab.meta.mlp import train_mlp_transform  # noqa: E402
from lora_lab.meta.study import (  # noqa: E402
    ARROW,
    FEWSHOT_PRIOR,
    FEWSHOT_SETTINGS,
    METRICS,
    PROTOCOLS,
    bank_soup_ks,
    compose_study_config,
    settings_for,
)
from lora_lab.utils.io import atomic_write_json, read_json  # noqa: E402

PUBLISHED = [f"{v}/{m}" for v in PAPER_VERSIONS for m in METRICS]
FEWSHOT = "fewshot/search"
PRIMARY = "rougeL"  # the score recovery and comparisons are measured in (SNI); another task: its first score


def dense(coefficients: np.ndarray, top_k: int | None, renormalize: bool = True) -> np.ndarray:
    """The coefficient row `predict_adapter` would use: top-k of the positive weights, renormalised (free
    LoraHub weights: the top-k by magnitude, as they are)."""
    kept, weights = select_members(coefficients, top_k, renormalize)
    row = np.zeros(len(coefficients))
    row[kept] = weights
    return row


def study_masks(bank, index: int, source: str | None, subsets: dict[int, np.ndarray]) -> dict[tuple, np.ndarray]:
    """(size, protocol) -> the (1, n) exclusion mask: the target (and, leave-source-out, its siblings) and every
    member outside the nested subset of that size."""
    masks = {}
    for size, in_subset in subsets.items():
        for protocol, by_source in PROTOCOLS.items():
            masks[size, protocol] = exclusion_mask([bank.names[index]], bank.names, [source] if by_source else None,
                                                   bank.sources if by_source else None) | ~in_subset[None]
    return masks


def coefficient_settings(job: tuple) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """All label-free settings' coefficient rows for one (target, size, protocol), and soup's k per representation;
    the mlp fits make this the costly part, so the study runs these jobs in a process pool."""
    import torch

    torch.set_num_threads(1)
    index, mask, distances, gram, method, seed, bank_exclude = job
    train = [i for i in range(mask.shape[1]) if not mask[0, i]]
    try:
        transforms = {m: train_mlp_transform(distances[m], gram, train, temperature=method["temperature"],
                                             seed=seed, **method["mlp"]).transform for m in METRICS}
        soup_ks = bank_soup_ks(distances, gram, train, bank_exclude)  # on the allowed members, not the target
    except Exception as err:  # noqa: BLE001 — the project's errors do not cross the process boundary as they are
        raise RuntimeError(f"member {index}, {int((~mask).sum())} members allowed: {err}") from None
    return settings_for({m: d[index:index + 1] for m, d in distances.items()}, mask, transforms,
                        method["temperature"], soup_ks), soup_ks


def all_settings(ctx: dict[str, Any], jobs: dict[tuple, tuple]) -> dict[tuple, tuple[dict, dict]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    started = time.perf_counter()
    workers = max(1, min(len(jobs), (os.cpu_count() or 1)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = dict(zip(jobs, pool.map(coefficient_settings, jobs.values(), chunksize=4), strict=True))
    ctx["timings"]["settings_s"] += time.perf_counter() - started
    return results


def target_rows(ctx: dict[str, Any], target: str, settings: dict[tuple, dict[str, np.ndarray]],
                masks: dict[tuple, np.ndarray], fewshot_features) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every coefficient row to score for one target, keyed `size|protocol|setting` (+ `base`, `oracle`), and the
    BankMixture form of each row that is not `delta`."""
    from lora_lab.meta.fewshot import FewshotOptions, fewshot_coefficients

    bank, cfg = ctx["bank"], ctx["cfg"]
    index = bank.index(target)
    rows = {"base": np.zeros(len(bank)), "oracle": np.eye(len(bank))[index]}
    forms: dict[str, str] = {}
    for (size, protocol), mask in masks.items():
        found_settings = settings[target, size, protocol][0]
        for name, coefficients in found_settings.items():
            rows[f"{size}|{protocol}|{name}"] = dense(coefficients, cfg.method.top_k)
        if ctx["arrow"]:  # routed per token among the allowed members: the row is the allowed set
            rows[f"{size}|{protocol}|{ARROW}"] = (~mask[0]).astype(np.float64)
            forms[f"{size}|{protocol}|{ARROW}"] = ARROW
        if not fewshot_features or size != max(ctx["subsets"]):  # the labelled settings: at the full bank only
            continue
        for name in ctx["fewshot_settings"]:
            version, form = FEWSHOT_SETTINGS[name]
            started = time.perf_counter()
            found = fewshot_coefficients(version, ctx["model"], ctx["mixture"], fewshot_features,
                                         found_settings[FEWSHOT_PRIOR], ~mask[0], ctx["pad_id"],
                                         FewshotOptions(candidates=cfg.method.top_k or 8,
                                                        budget=cfg.method.fewshot_budget, seed=cfg.seed,
                                                        l1=cfg.method.fewshot_l1, form=form))
            ctx["timings"]["fewshot_s"] += time.perf_counter() - started
            rows[f"{size}|{protocol}|{name}"] = dense(found.coefficients, cfg.method.top_k, found.mixture)
            forms[f"{size}|{protocol}|{name}"] = form
            ctx["fewshot_losses"].append({"target": target, "size": size, "protocol": protocol, "setting": name,
                                          "start_loss": found.start_loss, "best_loss": found.best_loss})
    return rows, forms


def score_rows(ctx: dict[str, Any], task, examples, rows: dict[str, np.ndarray],
               forms: dict[str, str] | None = None) -> dict[str, dict[str, float]]:
    """Mean scores of every row's mixture (in its form, default `delta`) on `examples`; identical rows are
    generated once."""
    from lora_lab.evaluation.generation import generate_batched
    from lora_lab.training.tokenize import prompt_ids, render_prompt

    cfg, mixture = ctx["cfg"], ctx["mixture"]
    forms = forms or {}
    key_of = {name: forms.get(name, "delta").encode() + np.round(row, 6).tobytes() for name, row in rows.items()}
    unique: dict[bytes, int] = {}
    matrix, row_forms = [], []
    for name, row in rows.items():
        if key_of[name] not in unique:
            unique[key_of[name]] = len(matrix)
            matrix.append(row)
            row_forms.append(forms.get(name, "delta"))
    matrix = np.stack(matrix)
    prompts = [prompt_ids(ctx["tokenizer"], render_prompt(ctx["tokenizer"], ex, cfg.model.use_chat_template))
               for ex in examples]
    n_examples = len(examples)
    started = time.perf_counter()
    predictions = generate_batched(
        ctx["model"], ctx["tokenizer"], prompts * len(matrix),
        max_new_tokens=cfg.eval.max_new_tokens or task.cfg.max_new_tokens, batch_size=cfg.eval.batch_size,
        stop_strings=task.stop_strings, device=ctx["device"], desc="mixtures",
        before_batch=lambda index: mixture.set_rows(matrix[[i // n_examples for i in index]],
                                                    [row_forms[i // n_examples] for i in index]),
    )
    mixture.set_rows(None)
    ctx["timings"]["generate_s"] += time.perf_counter() - started
    ctx["timings"]["generated_rows"] += len(predictions)
    per_row = []
    for r in range(len(matrix)):
        scores = [task.score(predictions[r * n_examples + e], examples[e]) for e in range(n_examples)]
        per_row.append({s: float(np.mean([x[s] for x in scores])) for s in scores[0]})
    return {name: per_row[unique[key_of[name]]] for name in rows}


def bootstrap(per_target: dict[str, dict[str, dict[str, float]]], key: str, resamples: int = 10000,
              seed: int = 0) -> dict[str, Any]:
    """Mean and 95 % CI over targets of every score, and the recovery fraction (with its CI) of the primary one,
    for one row key."""
    targets = sorted(per_target)
    primary = primary_score(per_target)
    values = {name: np.array([per_target[t][name][primary] for t in targets]) for name in (key, "base", "oracle")}
    picks = np.random.default_rng(seed).integers(0, len(targets), size=(resamples, len(targets)))
    means = {name: v[picks].mean(1) for name, v in values.items()}
    gain = means["oracle"] - means["base"]
    recovery = np.where(np.abs(gain) > 1e-12, (means[key] - means["base"]) / np.where(gain == 0, 1, gain), np.nan)
    full_gain = values["oracle"].mean() - values["base"].mean()
    summary: dict[str, Any] = {}
    for score in per_target[targets[0]][key]:
        column = np.array([per_target[t][key][score] for t in targets])
        summary[score] = float(column.mean())
        summary[f"{score}_ci95"] = [float(x) for x in np.percentile(column[picks].mean(1), [2.5, 97.5])]
    return {
        **summary,
        "recovery": float((values[key].mean() - values["base"].mean()) / full_gain) if full_gain else None,
        "recovery_ci95": [float(x) for x in np.nanpercentile(recovery, [2.5, 97.5])],
    }


def primary_score(per_target: dict[str, dict[str, dict[str, float]]]) -> str:
    scores = next(iter(next(iter(per_target.values())).values()))
    return PRIMARY if PRIMARY in scores else next(iter(scores))


def paired_difference(per_target, key_a: str, key_b: str, resamples: int = 10000, seed: int = 0) -> dict:
    """Mean Rouge-L difference a - b over targets with its bootstrap 95 % CI (paired by target)."""
    targets, primary = sorted(per_target), primary_score(per_target)
    diff = np.array([per_target[t][key_a][primary] - per_target[t][key_b][primary] for t in targets])
    picks = np.random.default_rng(seed).integers(0, len(targets), size=(resamples, len(targets)))
    return {"mean": float(diff.mean()), "ci95": [float(x) for x in np.percentile(diff[picks].mean(1), [2.5, 97.5])]}


def summarise(per_target, sizes: list[int], setting_list: list[str]) -> dict[str, Any]:
    table: dict[str, Any] = {"base": {p: bootstrap(per_target, "base") for p in PROTOCOLS},
                             "oracle": {p: bootstrap(per_target, "oracle") for p in PROTOCOLS}}
    scale: dict[str, Any] = {}
    for size in sizes:
        present = next(iter(per_target.values()))
        scale[str(size)] = {name: {p: bootstrap(per_target, f"{size}|{p}|{name}") for p in PROTOCOLS}
                            for name in setting_list if f"{size}|loo|{name}" in present}
    table.update(scale[str(max(sizes))])
    comparison = {}
    for protocol in PROTOCOLS:
        best = max(PUBLISHED, key=lambda name: table[name][protocol][primary_score(per_target)])
        top = max(sizes)
        comparison[protocol] = {"best_published": best,
                                "fewshot_minus_best": paired_difference(per_target, f"{top}|{protocol}|{FEWSHOT}",
                                                                        f"{top}|{protocol}|{best}")
                                if FEWSHOT in setting_list else None,
                                "best_minus_uniform": paired_difference(per_target, f"{top}|{protocol}|{best}",
                                                                        f"{top}|{protocol}|uniform")}
    return {"settings": table, "scale": scale, "comparison": comparison}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bank_dir", type=Path)
    parser.add_argument("--targets", default=None, help="comma-separated members (default: the preset's targets)")
    parser.add_argument("--eval-limit", type=int, default=50)
    parser.add_argument("--sizes", default="16,32,64", help="nested random bank sizes (the largest = the bank)")
    parser.add_argument("--inner-bank", type=Path, default=None,
                        help="a bank nested in this one (banks/bank64 in banks/bank128): its members come first, in "
                             "its own study's order, so the nested sizes up to its size are exactly its study's")
    parser.add_argument("--fewshot", type=int, default=5, help="labelled target examples for the searches (0: off)")
    parser.add_argument("--fewshot-settings", default=",".join(FEWSHOT_SETTINGS),
                        help="comma-separated labelled settings to score (default: all of them)")
    parser.add_argument("--embedding", action="store_true",
                        help="also rank members by MiniLM sentence embeddings (AdapterSoup's own similarity)")
    parser.add_argument("--no-arrow", action="store_true", help="leave Arrow's per-token routing out")
    parser.add_argument("--arrow-top-k", type=int, default=3, help="members each token is routed to (PEFT's default)")
    parser.add_argument("--deadline-s", type=float, default=None, help="start no new target after this long")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--plot", type=Path, default=None, help="recovery-vs-bank-size figure (PNG)")
    parser.add_argument("--plot-only", action="store_true", help="redraw --plot from an existing --out")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    args, overrides = parser.parse_args(argv[:split]), argv[split + 1:]
    if args.plot_only:
        plot_scale(read_json(args.out), args.plot)
        return

    from lora_lab.meta.mixture import BankMixture
    from lora_lab.meta.representation import Representer, task_from_reference
    from lora_lab.models import load_model_and_tokenizer
    from lora_lab.training.featurizers import featurizer_for
    from lora_lab.utils.device import select_device

    begun = time.perf_counter()
    cfg = compose_study_config([f"method.bank_dir={args.bank_dir}", *overrides])
    bank = load_bank(args.bank_dir)
    check_bank_model(bank, cfg.model)
    targets = args.targets.split(",") if args.targets else preset_targets(len(bank))
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if max(sizes) > len(bank):
        raise SystemExit(f"--sizes {args.sizes}: the bank has {len(bank)} members")
    device = select_device(cfg.hardware)
    model, tokenizer = load_model_and_tokenizer(cfg)
    model.to(device).eval()
    timings: dict[str, float] = {"load_model_s": time.perf_counter() - begun, "settings_s": 0.0, "fewshot_s": 0.0,
                                 "generate_s": 0.0, "generated_rows": 0}
    started = time.perf_counter()
    cache = ArrayCache(Path(args.bank_dir) / ".cache")
    represent = Representer(cfg, tokenizer, cache)
    histograms = np.stack([represent(dict(m.dataset)) for m in bank.members])
    distances = {m: pairwise_distance(m, histograms, histograms) for m in METRICS}
    if args.embedding:  # mean MiniLM sentence embeddings, cosine distance
        from omegaconf import OmegaConf

        embed = Representer(OmegaConf.merge(cfg, {"method": {"representation": "embedding"}}), tokenizer, cache)
        vectors = np.stack([embed(dict(m.dataset)) for m in bank.members])
        distances["embedding"] = pairwise_distance("cosine", vectors, vectors)
    gram = cache.get_or_compute({"kind": "gram", "members": bank_fingerprint(bank.names, bank.adapter_dirs)},
                                lambda: bank_gram_matrix(bank.adapter_dirs))
    timings["distances_and_gram_s"] = time.perf_counter() - started
    order = nested_order(bank, load_bank(args.inner_bank) if args.inner_bank else None, cfg.seed)
    subsets = {size: np.isin(np.arange(len(bank)), order[:size]) for size in sizes}
    fewshot_settings = [name for name in args.fewshot_settings.split(",") if name]
    unknown = sorted(set(fewshot_settings) - set(FEWSHOT_SETTINGS))
    if unknown:
        raise SystemExit(f"--fewshot-settings {unknown}: unknown (choices: {', '.join(FEWSHOT_SETTINGS)})")
    ctx = {"bank": bank, "cfg": cfg, "model": model, "tokenizer": tokenizer, "device": device,
           "mixture": BankMixture(model, bank.adapter_dirs, arrow_top_k=args.arrow_top_k), "distances": distances,
           "gram": gram, "subsets": subsets, "timings": timings, "fewshot_losses": [],
           "fewshot_settings": fewshot_settings, "arrow": not args.no_arrow,
           "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id}
    scored = {"fewshot": args.fewshot, "fewshot_settings": fewshot_settings, "arrow": not args.no_arrow,
              "arrow_top_k": args.arrow_top_k, "embedding": args.embedding}  # a resumed run scores the same rows
    previous = read_json(args.out) or {}
    same_run = (previous.get("bank_members") == bank.names and previous.get("sizes") == sizes
                and previous.get("scored") == scored)
    per_target: dict[str, Any] = previous.get("per_target", {}) if same_run else {}
    ctx["fewshot_losses"] = previous.get("fewshot_losses", []) if same_run else []
    featurize = featurizer_for(cfg.model.kind)
    todo = [t for t in targets if t not in per_target]
    masks = {t: study_masks(bank, bank.index(t), bank.members[bank.index(t)].source, subsets) for t in todo}
    method = {"temperature": cfg.method.temperature, "mlp": dict(cfg.method.mlp)}
    bank_masks = {protocol: exclusion_mask(bank.names, bank.names, bank.sources if by_source else None,
                                           bank.sources if by_source else None)
                  for protocol, by_source in PROTOCOLS.items()}  # each pseudo-target of soup's k, as its target
    settings = all_settings(ctx, {(t, size, protocol): (bank.index(t), mask, distances, gram, method, cfg.seed,
                                                        bank_masks[protocol])
                                  for t in todo for (size, protocol), mask in masks[t].items()}) if todo else {}
    for target in todo:
        if args.deadline_s and time.perf_counter() - begun > args.deadline_s:
            print(f"deadline reached; {len(per_target)} of {len(targets)} targets done", flush=True)
            break
        index = bank.index(target)
        member = bank.members[index]
        task = task_from_reference(dict(member.dataset))
        examples = task.eval_examples()[:args.eval_limit]
        shots = [featurize(tokenizer, ex, cfg.model.use_chat_template, cfg.train.max_seq_len)
                 for ex in task.train_examples()[:args.fewshot]]
        rows, forms = target_rows(ctx, target, settings, masks[target], shots)
        per_target[target] = score_rows(ctx, task, examples, rows, forms)
        per_target[target]["_examples"] = len(examples)
        per_target[target]["_soup_k"] = {f"{size}|{protocol}": settings[target, size, protocol][1]
                                         for size, protocol in masks[target]}
        primary = primary_score({target: per_target[target]})
        print(f"{target}: base {per_target[target]['base'][primary]:.3f} "
              f"oracle {per_target[target]['oracle'][primary]:.3f} "
              f"normalized/js LOO {per_target[target][f'{max(sizes)}|loo|normalized/js'][primary]:.3f} "
              f"({time.perf_counter() - begun:.0f} s)", flush=True)
        atomic_write_json(args.out, {"bank_members": bank.names, "sizes": sizes, "scored": scored,
                                     "per_target": per_target, "fewshot_losses": ctx["fewshot_losses"],
                                     "timings": timings})
    ctx["mixture"].close()
    done = {t: {k: v for k, v in rows.items() if not k.startswith("_")} for t, rows in per_target.items()}
    setting_list = sorted({k.split("|", 2)[2] for k in next(iter(done.values())) if k.count("|") == 2})
    result = {
        "members": len(bank), "bank_members": bank.names, "scored": scored, "targets": sorted(done),
        "eval_examples": {t: rows["_examples"] for t, rows in per_target.items()},
        "protocols": list(PROTOCOLS), "sizes": sizes, "combine": "delta", "top_k": cfg.method.top_k,
        "soup_k": {t: rows["_soup_k"] for t, rows in per_target.items()},
        "temperature": cfg.method.temperature, "fewshot_examples": args.fewshot,
        **summarise(done, sizes, setting_list), "per_target": per_target, "fewshot_losses": ctx["fewshot_losses"],
        "timings": {**timings, "total_s": time.perf_counter() - begun}, "overrides": overrides,
        "machine": {"device": str(device), "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    atomic_write_json(args.out, result)
    if args.plot:
        plot_scale(result, args.plot)
    print(json.dumps({name: result["settings"][name] for name in ("base", "oracle")}, indent=1))


def plot_scale(result: dict[str, Any], path: Path) -> None:
    """Mean Rouge-L recovery vs bank size, one line per setting family, one panel per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [str(s) for s in result["sizes"]]
    shown = [name for name in ("uniform", "normalized/js", "normalized/wd", "mlp/wd", "mlp/mmd", "base/kl",
                               "nearest/js", "soup/js", "soup/embedding", ARROW) if name in result["scale"][sizes[0]]]
    fig, axes = plt.subplots(1, len(PROTOCOLS), figsize=(11, 4), sharey=True)
    for ax, protocol in zip(axes, PROTOCOLS, strict=True):
        for name in shown:
            values = [result["scale"][s][name][protocol]["recovery"] for s in sizes]
            ax.plot([int(s) for s in sizes], values, marker="o", label=name)
        fewshot = result["settings"].get(FEWSHOT, {}).get(protocol)
        if fewshot:
            ax.errorbar([int(sizes[-1])], [fewshot["recovery"]], fmt="k*", markersize=12,
                        yerr=[[fewshot["recovery"] - fewshot["recovery_ci95"][0]],
                              [fewshot["recovery_ci95"][1] - fewshot["recovery"]]], label="few-shot search (5 ex.)")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_title(f"{protocol.upper()}: {'target left out' if protocol == 'loo' else 'target family left out'}")
        ax.set_xlabel("bank size (nested random subsets)")
        ax.set_xticks([int(s) for s in sizes])
    axes[0].set_ylabel("recovery (meta - base) / (oracle - base)")
    axes[-1].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"SmolLM2-135M, {len(result['targets'])} held-out SNI targets x "
                 f"{max(result['eval_examples'].values())} test examples")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def preset_targets(members: int = 64) -> list[str]:
    """The held-out targets chosen with the `meta_bank<members>` preset's members (benchmarks/select_bank64.py):
    16 for the 64 bank, those 16 and one per further family for 128."""
    return (Path(__file__).resolve().parent / f"meta_bank{members}_targets.txt").read_text().split()


def nested_order(bank, inner, seed: int) -> np.ndarray:
    """Bank indices in the order nested subsets take them: a seeded permutation; with an `inner` bank nested in
    this one, its members first in the order its own study drew them (the same seed over its own member list),
    then the rest, permuted."""
    if inner is None:
        return np.random.default_rng(seed).permutation(len(bank))
    missing = sorted(set(inner.names) - set(bank.names))
    if missing:
        raise SystemExit(f"--inner-bank: {len(missing)} of its members are not in this bank, e.g. {missing[0]}")
    first = [bank.index(inner.names[i]) for i in np.random.default_rng(seed).permutation(len(inner))]
    rest = np.array(sorted(set(range(len(bank))) - set(first)))
    return np.array(first + rest[np.random.default_rng(seed).permutation(len(rest))].tolist())


if __name__ == "__main__":
    main()
