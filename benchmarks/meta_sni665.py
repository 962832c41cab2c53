"""The four meta-generation distances on real data: every task of an SNI instances file, one tokenizer.

Each task is represented as in `method=meta`: the token-ID histogram of its train split (the task's own
80/20 split, `task=sni` defaults), each example being the zero-shot SNI prompt (definition + input) plus the
first reference output. Then the 4 exact task x task matrices (WD, KL, JS, MMD), timed per stage, and a heatmap
with tasks ordered by SNI category, so same-category blocks show on the diagonal.

Reported beside the timings, as a check that the distances see task structure: for each metric, how often a
task's nearest other task shares its source dataset (the word after the task number) or its category,
against the rate expected by chance; and the Spearman correlation between the metrics' off-diagonal entries.

    python benchmarks/meta_sni665.py --data <data>/sni665                 # SmolLM2 tokenizer, all tasks
    python benchmarks/meta_sni665.py --data <data>/sni665 --quick         # 40 tasks, no heatmap
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_lab.meta.distances import pairwise_distance  # noqa: E402
from lora_lab.meta.from_runs import member_source  # noqa: E402
from lora_lab.meta.histograms import token_histogram  # noqa: E402
from lora_lab.tasks.sni import Instance, sni_prompt, split_instances  # noqa: E402

METRICS = ("wd", "kl", "js", "mmd")
# LORA_LAB_BENCH_RESULTS: write elsewhere (tests use a tmp dir so the committed results stay as measured)
RESULTS = Path(os.environ.get("LORA_LAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def read_tasks(folder: Path) -> tuple[dict[str, list[Instance]], dict[str, dict]]:
    """One pass over `sni_instances.jsonl` (grouped by task) and the task metadata of `sni_tasks.jsonl`."""
    meta = {}
    with (folder / "sni_tasks.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            meta[row["task"]] = row
    by_task: dict[str, list[Instance]] = defaultdict(list)
    with (folder / "sni_instances.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            output = row["output"][0] if isinstance(row["output"], list) else row["output"]
            summary = meta.get(row["task"], {}).get("summary")
            by_task[row["task"]].append(Instance(str(row["instance_id"]), str(row["input"]), str(output), summary))
    return dict(by_task), meta


def train_texts(task: str, instances: list[Instance]) -> list[str]:
    """The same texts `method=meta` histograms for `task=sni` (test_fraction 0.2, split_seed 0)."""
    train = split_instances(instances, task, 0.2, 0)["train"]
    return [f"{sni_prompt(i.definition, i.input)} {i.output}" for i in train]


def nearest_agreement(distances: np.ndarray, labels: list[str]) -> tuple[float, float]:
    """Share of tasks whose nearest other task has the same label, and the share expected by chance."""
    d = distances.copy()
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(axis=1)
    labels_arr = np.array(labels)
    hit = float(np.mean(labels_arr[nearest] == labels_arr))
    counts = np.unique(labels_arr, return_counts=True)[1]
    n = len(labels)
    chance = float(np.sum(counts * (counts - 1)) / (n * (n - 1)))
    return hit, chance


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    upper = np.triu_indices_from(a, k=1)
    return float(spearmanr(a[upper], b[upper]).statistic)


def heatmap(matrices: dict[str, np.ndarray], order: np.ndarray, categories: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 11.5))
    ordered_categories = [categories[i] for i in order]
    edges = [i for i in range(1, len(order)) if ordered_categories[i] != ordered_categories[i - 1]]
    for ax, (name, matrix) in zip(axes.flat, matrices.items(), strict=True):
        view = matrix[np.ix_(order, order)]
        off = view[~np.eye(len(view), dtype=bool)]
        low, high = np.percentile(off, [1, 99])
        image = ax.imshow(view, cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
        for edge in edges:
            ax.axhline(edge - 0.5, color="white", linewidth=0.15)
            ax.axvline(edge - 0.5, color="white", linewidth=0.15)
        ax.set_title(f"{name.upper()}  (dark = close; colour range: 1st-99th percentile)", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle(f"{len(order)} SNI tasks x {len(order)}, ordered by category (white lines: category edges)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_tokenizer(name: str):
    """The tokenizer of a model config in conf/model (offline sources included), without the weights."""
    from lora_lab.config.compose import compose_config
    from lora_lab.config.validate import validate_config
    from lora_lab.models import load_model_and_tokenizer

    _, tokenizer = load_model_and_tokenizer(validate_config(compose_config([f"model={name}"])))
    return tokenizer


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with sni_instances.jsonl, sni_tasks.jsonl")
    parser.add_argument("--model", default="smollm2_135m", help="conf/model option whose tokenizer is used")
    parser.add_argument("--quick", action="store_true", help="first 40 tasks, no heatmap")
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default benchmarks/results/)")
    parser.add_argument("--heatmap", type=Path, default=Path(__file__).parents[1] / "docs" / "img" / "sni665_distances.png")
    parser.add_argument("--matrices", type=Path, default=None, help="also save the matrices (.npz)")
    args = parser.parse_args(argv)

    timings: dict[str, float] = {}
    started = time.perf_counter()
    by_task, meta = read_tasks(args.data)
    tasks = sorted(by_task)[: 40 if args.quick else None]
    timings["read_s"] = time.perf_counter() - started

    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    timings["load_tokenizer_s"] = time.perf_counter() - started

    started = time.perf_counter()
    vocab = len(tokenizer)
    histograms = np.stack([token_histogram(train_texts(t, by_task[t]), tokenizer, vocab) for t in tasks])
    timings["histograms_s"] = time.perf_counter() - started

    matrices = {}
    for metric in METRICS:
        started = time.perf_counter()
        matrices[metric] = pairwise_distance(metric, histograms, histograms)
        timings[f"distance_{metric}_s"] = time.perf_counter() - started
    timings["distances_total_s"] = sum(timings[f"distance_{m}_s"] for m in METRICS)

    sources = [member_source({"sni_task": t}) or t for t in tasks]  # the bank's leave-source-out grouping
    categories = [meta.get(t, {}).get("category", "?") for t in tasks]
    checks = {}
    for metric, matrix in matrices.items():
        same_source, chance_source = nearest_agreement(matrix, sources)
        same_category, chance_category = nearest_agreement(matrix, categories)
        checks[metric] = {"nearest_same_source": same_source, "chance_same_source": chance_source,
                          "nearest_same_category": same_category, "chance_same_category": chance_category,
                          "diagonal_max": float(np.abs(np.diag(matrix)).max())}
    correlations = {f"{a}~{b}": spearman(matrices[a], matrices[b])
                    for i, a in enumerate(METRICS) for b in METRICS[i + 1:]}

    if not args.quick:
        order = np.array(sorted(range(len(tasks)), key=lambda i: (categories[i], tasks[i])))
        heatmap(matrices, order, categories, args.heatmap)
    if args.matrices:
        np.savez_compressed(args.matrices, tasks=np.array(tasks), **matrices)

    result = {
        "benchmark": "meta_sni665" + ("_quick" if args.quick else ""),
        "data": args.data.name,
        "tasks": len(tasks),
        "instances_histogrammed": int(sum(len(split_instances(by_task[t], t, 0.2, 0)["train"]) for t in tasks)),
        "tokens_histogrammed": int(histograms.sum()),
        "vocab": vocab,
        "model": args.model,
        "timings": timings,
        "checks": checks,
        "spearman": correlations,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": os.cpu_count(),
        "machine": platform.machine(),
    }
    out = args.out or RESULTS / f"{result['benchmark']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(tasks)} tasks, {result['tokens_histogrammed']:,} tokens, vocab {vocab}")
    print(f"{'stage':<22}{'seconds':>10}")
    for stage, seconds in timings.items():
        print(f"{stage:<22}{seconds:>10.2f}")
    print(f"{'metric':<8}{'NN same source':>16}{'(chance)':>10}{'NN same category':>18}{'(chance)':>10}")
    for metric, c in checks.items():
        print(f"{metric:<8}{c['nearest_same_source']:>16.3f}{c['chance_same_source']:>10.3f}"
              f"{c['nearest_same_category']:>18.3f}{c['chance_same_category']:>10.3f}")
    print("spearman:", ", ".join(f"{k} {v:.3f}" for k, v in correlations.items()))
    return result


if __name__ == "__main__":
    main()
