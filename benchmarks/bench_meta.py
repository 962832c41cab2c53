"""Benchmark of CPU meta-generation on a synthetic bank of the paper's shape.

Full mode: 502 members, rank 16, q/k/v of a 32-layer model with hidden 4096 and kv dim 1024 (q: 4096->4096,
k/v: 4096->1024), bf16 safetensors (~9.4 GB), and token histograms over a 32,000 vocabulary. Adapters and
histograms share a hidden topic structure (20 topics) so the coefficient rules have something to find.

Measures (1) the four 502 x 502 distance matrices, (2) the bank Gram matrix (one pass over the bank) and
the 12-setting coefficient grid (4 metrics x 3 versions, every bank task as a leave-one-out target, mlp
training included), (3) predicting one adapter per combine mode against reading the members it uses once,
and peak RSS.

    python benchmarks/bench_meta.py --quick            # < 1 min, small shapes
    python benchmarks/bench_meta.py --out meta.json    # full shape; needs ~9.4 GB of disk
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_lab.meta.bank import load_bank, write_bank_index  # noqa: E402
from lora_lab.meta.coefficients import PAPER_VERSIONS, compute_coefficients, exclusion_mask  # noqa: E402
from lora_lab.meta.combine import predict_adapter  # noqa: E402
from lora_lab.meta.distances import pairwise_distance  # noqa: E402
from lora_lab.meta.gram import bank_gram_matrix, reconstruction_error  # noqa: E402
from lora_lab.meta.lora_tensors import AdapterReader  # noqa: E402
from lora_lab.meta.mlp import train_mlp_transform  # noqa: E402
from lora_lab.meta.threads import torch_threads  # noqa: E402

METRICS = ("wd", "kl", "js", "mmd")
PAPER_CPU_HOURS = (6.0, 8.0)  # reported for the 12 settings on a 20-core laptop
TOPICS = 20


@dataclass(frozen=True)
class BankSpec:
    members: int
    layers: int
    hidden: int
    kv_dim: int
    rank: int
    vocab: int
    tokens_per_task: int
    seed: int = 0

    @property
    def modules(self) -> dict[str, tuple[int, int]]:
        """module name -> (d_in, d_out), PEFT key layout of a Llama/Mistral model."""
        dims = {"q_proj": self.hidden, "k_proj": self.kv_dim, "v_proj": self.kv_dim}
        return {
            f"base_model.model.model.layers.{layer}.self_attn.{proj}": (self.hidden, d_out)
            for layer in range(self.layers)
            for proj, d_out in dims.items()
        }

    @property
    def parameters_per_member(self) -> int:
        return sum(self.rank * (d_in + d_out) for d_in, d_out in self.modules.values())


QUICK = BankSpec(members=24, layers=2, hidden=512, kv_dim=128, rank=16, vocab=32000, tokens_per_task=50_000)
FULL = BankSpec(
    members=502, layers=32, hidden=4096, kv_dim=1024, rank=16, vocab=32000, tokens_per_task=200_000
)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class Stopwatch:
    """Wall seconds per stage (`results`) and process CPU seconds (`cpu`, all threads)."""

    def __init__(self) -> None:
        self.results: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str):
        watch = self

        class _Timer:
            def __enter__(self):
                self.start, self.cpu_start = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                watch.results[name] = time.perf_counter() - self.start
                watch.cpu[name] = time.process_time() - self.cpu_start
                print(f"  [{name}] {watch.results[name]:.2f} s", file=sys.stderr, flush=True)

        return _Timer()


def topic_of(member: int) -> int:
    return member % TOPICS


def generate_histograms(spec: BankSpec) -> np.ndarray:
    """Zipfian token counts: half a global distribution, half a topic-specific one (a permuted Zipf),
    each task with its own perturbation - realistic sparsity (many ids unused) and clustered distances."""
    rng = np.random.default_rng(spec.seed)
    zipf = 1.0 / np.arange(1, spec.vocab + 1) ** 1.1
    zipf /= zipf.sum()
    topic_orders = [rng.permutation(spec.vocab) for _ in range(TOPICS)]
    histograms = np.empty((spec.members, spec.vocab), dtype=np.float64)
    for member in range(spec.members):
        topic = np.empty(spec.vocab)
        topic[topic_orders[topic_of(member)]] = zipf
        mixture = 0.5 * zipf + 0.5 * topic * rng.lognormal(0.0, 0.5, spec.vocab)
        histograms[member] = rng.multinomial(spec.tokens_per_task, mixture / mixture.sum())
    return histograms


def generate_bank(spec: BankSpec, root: Path) -> None:
    """Member = its topic's factors + independent noise, stored bf16 like the Lots-of-LoRAs adapters."""
    generator = torch.Generator().manual_seed(spec.seed)
    shapes = {}
    for module, (d_in, d_out) in spec.modules.items():
        shapes[f"{module}.lora_A.weight"] = (spec.rank, d_in)
        shapes[f"{module}.lora_B.weight"] = (d_out, spec.rank)
    topics = [
        {
            key: (0.02 * torch.randn(shape, generator=generator)).to(torch.bfloat16)
            for key, shape in shapes.items()
        }
        for _ in range(TOPICS)
    ]
    config = {
        "base_model_name_or_path": "synthetic/mistral-shaped",
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": spec.rank,
        "lora_alpha": 2 * spec.rank,
        "target_modules": ["q_proj", "k_proj", "v_proj"],
        "lora_dropout": 0.0,
        "bias": "none",
    }
    entries = []
    for member in range(spec.members):
        name = f"task{member:03d}"
        directory = root / "adapters" / name
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            key: (base.float() + 0.01 * torch.randn(base.shape, generator=generator)).to(torch.bfloat16)
            for key, base in topics[topic_of(member)].items()
        }
        save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
        (directory / "adapter_config.json").write_text(json.dumps(config))
        entries.append(
            {"name": name, "adapter": f"adapters/{name}", "dataset": {"synthetic_topic": topic_of(member)}}
        )
    write_bank_index(root, config["base_model_name_or_path"], entries)


def prepare(spec: BankSpec, workdir: Path, watch: Stopwatch) -> tuple[Path, np.ndarray]:
    """Reuse a bank generated with the same spec; otherwise check disk space and generate it."""
    root = workdir / "bank"
    spec_file = workdir / "spec.json"
    histogram_file = workdir / "histograms.npy"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == asdict(spec) and histogram_file.is_file():
        return root, np.load(histogram_file)
    needed = spec.members * spec.parameters_per_member * 2
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < 1.1 * needed:
        sys.exit(
            f"need {needed / 1e9:.1f} GB free under {workdir}, have {free / 1e9:.1f} GB; try --members N"
        )
    if root.exists():
        shutil.rmtree(root)
    spec_file.unlink(missing_ok=True)
    with watch("generate_bank"):
        generate_bank(spec, root)
    with watch("generate_histograms"):
        histograms = generate_histograms(spec)
    np.save(histogram_file, histograms)
    spec_file.write_text(json.dumps(asdict(spec)))
    return root, histograms


def evict_from_page_cache(adapter_dirs: list[Path]) -> None:
    """Drop these files' cached pages (only theirs), so the next read comes from the disk."""
    for directory in adapter_dirs:
        fd = os.open(directory / "adapter_model.safetensors", os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_members_once(adapter_dirs: list[Path]) -> None:
    """The reference cost: every tensor of every used member read once into float32 (single-threaded, the
    fastest way to do these small conversions, as prediction does)."""
    with torch_threads(1):
        for directory in adapter_dirs:
            reader = AdapterReader(directory)
            for key in reader.keys():
                reader.tensor(key)
            reader.close()


def run(spec: BankSpec, workdir: Path, top_k: int, mlp_steps: int, factors_all: bool) -> dict:
    watch = Stopwatch()
    rss: dict[str, float] = {}
    load_start = os.getloadavg()
    root, histograms = prepare(spec, workdir, watch)
    bank = load_bank(root)
    rss["after_bank"] = peak_rss_mib()

    distances = {}
    for metric in METRICS:
        with watch(f"distance_{metric}"):
            distances[metric] = pairwise_distance(metric, histograms, histograms)
    rss["after_distances"] = peak_rss_mib()

    with watch("gram_matrix"):
        gram = bank_gram_matrix(bank.adapter_dirs)
    rss["after_gram"] = peak_rss_mib()

    n = len(bank)
    order = np.random.default_rng(spec.seed).permutation(n)
    train, held_out = np.sort(order[: int(0.8 * n)]), np.sort(order[int(0.8 * n) :])
    exclude = exclusion_mask(bank.names, bank.names)
    coefficients: dict[str, np.ndarray] = {}
    held_out_error: dict[str, float] = {}
    with watch("coefficient_grid"):
        for metric in METRICS:
            fit = train_mlp_transform(distances[metric], gram, train, exclude, steps=mlp_steps)
            for version in PAPER_VERSIONS:
                transform = fit.transform if version == "mlp" else None
                weights = compute_coefficients(version, distances[metric], exclude, transform=transform)
                coefficients[f"{metric}/{version}"] = weights
                held_out_error[f"{metric}/{version}"] = float(
                    reconstruction_error(weights[held_out], gram, held_out).mean()
                )
    for baseline in ("uniform", "nearest"):
        weights = compute_coefficients(baseline, distances["js"], exclude)
        held_out_error[f"js/{baseline}"] = float(
            reconstruction_error(weights[held_out], gram, held_out).mean()
        )
    rss["after_coefficients"] = peak_rss_mib()

    target = int(held_out[0])
    row = coefficients["js/normalized"][target]
    predictions = {}
    modes = [("delta", top_k), ("svd", top_k), ("factors", top_k)] + (
        [("factors", None)] if factors_all else []
    )
    for mode, mode_top_k in modes:
        label = f"{mode}(top_k={mode_top_k if mode_top_k else 'all'})"
        out_dir = workdir / "predicted" / label.replace("(", "_").replace(")", "").replace("=", "")
        kept = np.argsort(-row)[: mode_top_k or n]
        used_dirs = [bank.adapter_dirs[i] for i in kept]
        row_report: dict[str, float | int] = {}
        for cache_state in ("cold", "warm"):
            if cache_state == "cold":
                evict_from_page_cache(used_dirs)
            else:
                read_members_once(used_dirs)  # both timings below see the members in the page cache
            with watch(f"read_{label}_{cache_state}"):
                read_members_once(used_dirs)
            if cache_state == "cold":
                evict_from_page_cache(used_dirs)
            with watch(f"predict_{label}_{cache_state}"):
                prediction = predict_adapter(bank.adapter_dirs, row, out_dir, mode=mode, top_k=mode_top_k)
            read_s = watch.results[f"read_{label}_{cache_state}"]
            row_report.update(
                {
                    f"{cache_state}_read_s": read_s,
                    f"{cache_state}_combine_s": prediction.seconds["combine"],
                    f"{cache_state}_write_s": prediction.seconds["write"],
                    f"{cache_state}_combine_over_read": prediction.seconds["combine"] / read_s,
                }
            )
        predictions[label] = {
            "members": len(prediction.member_indices),
            "rank": prediction.rank,
            **row_report,
        }
    rss["after_predict"] = peak_rss_mib()

    grid_total = sum(watch.results[f"distance_{m}"] for m in METRICS) + watch.results["coefficient_grid"]
    return {
        "spec": asdict(spec),
        "bank_gb": spec.members * spec.parameters_per_member * 2 / 1e9,
        "timings_s": watch.results,
        "cpu_s": watch.cpu,
        "cpu_part_12_settings_s": grid_total + watch.results["gram_matrix"],
        "paper_cpu_part_hours": PAPER_CPU_HOURS,
        "predictions": predictions,
        "held_out_relative_error": held_out_error,
        "peak_rss_mib": rss,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
    }


def print_report(report: dict) -> None:
    spec, times = report["spec"], report["timings_s"]
    print(
        f"bank: {spec['members']} members, r{spec['rank']}, {spec['layers']} layers x q/k/v "
        f"(hidden {spec['hidden']}, kv {spec['kv_dim']}), {report['bank_gb']:.2f} GB bf16, vocab {spec['vocab']}"
    )
    print(f"{'stage':<38}{'wall s':>10}{'cpu s':>10}")
    for name, seconds in times.items():
        print(f"{name:<38}{seconds:>10.2f}{report['cpu_s'][name]:>10.2f}")
    print(
        f"\n{'predict (one target)':<22}{'members':>8}{'rank':>6}{'cache':>7}{'read s':>8}{'combine s':>10}"
        f"{'write s':>9}{'combine/read':>14}"
    )
    for label, row in report["predictions"].items():
        for state in ("cold", "warm"):
            print(
                f"{label:<22}{row['members']:>8}{row['rank']:>6}{state:>7}{row[f'{state}_read_s']:>8.2f}"
                f"{row[f'{state}_combine_s']:>10.2f}{row[f'{state}_write_s']:>9.2f}"
                f"{row[f'{state}_combine_over_read']:>14.2f}"
            )
    print("\nheld-out relative reconstruction error ||C Theta - Theta||^2 / ||Theta||^2:")
    for setting, error in report["held_out_relative_error"].items():
        print(f"  {setting:<18}{error:.4f}")
    cpu_part = report["cpu_part_12_settings_s"]
    low, high = report["paper_cpu_part_hours"]
    print(
        f"\nCPU part, 12 settings (distances + Gram + coefficient grid): {cpu_part:.1f} s on "
        f"{report['machine']['cpus']} cores vs {low:.0f}-{high:.0f} h reported on a 20-core laptop"
    )
    print("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in report["peak_rss_mib"].items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small shapes, < 1 min")
    parser.add_argument("--members", type=int, help="override the number of bank members")
    parser.add_argument(
        "--workdir", type=Path, help="where the synthetic bank lives (default benchmarks/.cache/)"
    )
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--top-k", type=int, default=8, help="members kept by delta/svd/factors predictions")
    parser.add_argument("--mlp-steps", type=int, default=100)
    parser.add_argument(
        "--factors-all", action="store_true", help="also time the published factors mode over every member"
    )
    args = parser.parse_args(argv)
    spec = QUICK if args.quick else FULL
    if args.members:
        spec = BankSpec(**{**asdict(spec), "members": args.members})
    default_dir = Path(__file__).resolve().parent / ".cache" / ("meta-quick" if args.quick else "meta-full")
    report = run(
        spec, args.workdir or default_dir, args.top_k, args.mlp_steps, args.factors_all or args.quick
    )
    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
