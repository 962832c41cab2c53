"""Memory facts, measured and ASSERTED (not timed): QLoRA needs less memory than LoRA on the same model, and
GaLore's optimiser state is smaller than AdamW's over the same (full) set of trainable weights.

Each case runs in a fresh subprocess (a process's RSS high-water mark never goes down, so cases must not
share one). Per case: load the model as the method wants it, apply the method, train a few steps with the
lora-lab loop, and record
  * model_mb            bytes of parameters + buffers after `apply` (4-bit weights count as packed bytes)
  * train_peak_rss_mb   RSS high-water mark sampled during training (CPU), or CUDA max allocated (GPU)
  * process_peak_rss_mb ru_maxrss of the whole process (includes loading, e.g. a float copy before quantising)
  * optimizer_state_mb  every tensor the optimiser keeps (moments, GaLore projection bases)

Cases: lora, qlora (method=qlora), full_adamw (every weight trainable, torch AdamW), galore (method=galore,
same trainable weights, GaLoreAdamW). Facts: qlora.train_peak < lora.train_peak and qlora.model < lora.model;
galore.optimizer_state < full_adamw.optimizer_state. A method that is not importable is skipped with a message.

    python benchmarks/bench_memory.py                 # SmolLM2-135M, GSM8K-length data (needs data)
    python benchmarks/bench_memory.py --quick         # model=tiny task=arith, model/optimizer facts only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# LORA_LAB_BENCH_RESULTS: write elsewhere (tests use a tmp dir so the committed results stay as measured)
RESULTS = Path(os.environ.get("LORA_LAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
CASES = {"lora": "lora", "qlora": "qlora", "full_adamw": "galore", "galore": "galore"}


def _cfg(args, method: str):
    from lora_lab.config.compose import compose_config
    from lora_lab.config.validate import validate_config

    overrides = [
        f"model={args.model}",
        f"task={args.task}",
        f"method={method}",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        "train.warmup_ratio=0.0",
        *args.override,
    ]
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    if method == "galore" and args.galore_rank:
        overrides.append(f"method.rank={args.galore_rank}")
    return validate_config(compose_config(overrides))


def run_case(args) -> dict:
    """Child process: one case, printed as one JSON line."""
    import torch

    from lora_lab.methods import METHODS
    from lora_lab.methods.base import Method
    from lora_lab.models import load_model_and_tokenizer
    from lora_lab.tasks import TASKS
    from lora_lab.training.featurizers import featurizer_for
    from lora_lab.training.loop import train
    from lora_lab.training.optimization import Optimization, build_scheduler
    from lora_lab.utils.memory import PeakMemory

    case = args.case
    if CASES[case] not in METHODS:
        return {"case": case, "skipped": f"method {CASES[case]!r} not registered"}
    cfg = _cfg(args, CASES[case])
    device = torch.device(args.device)
    task = TASKS.get(cfg.task.name)(cfg.task)
    examples = task.train_examples()[: args.train_limit]
    method = METHODS.get(cfg.method.name)(cfg)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model, tokenizer = load_model_and_tokenizer(cfg, method.model_load_kwargs())
    model = method.place(model, device)
    torch.manual_seed(cfg.seed)
    model = method.apply(model)
    tensors = [*model.parameters(), *model.buffers()]
    model_bytes = sum(t.numel() * t.element_size() for t in tensors)
    for tensor in tensors:  # weights memory-mapped from safetensors would count as file pages, or not at all
        tensor.data = tensor.data.clone()  # until touched: make every case hold its weights in private memory
    optimizer = (
        Method.build_optimizer(method, model) if case == "full_adamw" else method.build_optimizer(model)
    )
    optimization = Optimization(optimizer, build_scheduler(optimizer, cfg.train))
    featurize = featurizer_for(cfg.model.kind)
    features = [
        featurize(tokenizer, ex, cfg.model.use_chat_template, cfg.train.max_seq_len) for ex in examples
    ]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _release_freed_heap()  # loading (e.g. a float copy before 4-bit quantising) must not count as training memory
    import psutil

    rss_before_train = psutil.Process().memory_info().rss / 2**20
    with PeakMemory(interval=0.01) as mem:
        result = train(
            model, features, method, cfg, pad_id=tokenizer.pad_token_id, device=device,
            optimization=optimization,
        )
    from lora_lab.methods.galore import optimizer_state_bytes

    peaks = mem.metrics()
    return {
        "case": case,
        "method": cfg.method.name,
        "model": cfg.model.name,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "model_mb": model_bytes / 2**20,
        "optimizer_state_mb": optimizer_state_bytes(optimizer) / 2**20,
        "train_peak_rss_mb": peaks["peak_rss_mb"],
        "train_peak_anon_rss_mb": peaks.get("peak_anon_rss_mb"),
        "train_peak_cuda_mb": peaks.get("peak_cuda_allocated_mb"),
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_after_imports_mb": rss_start,
        "rss_before_train_mb": rss_before_train,
        "losses": result.losses,
    }


def _release_freed_heap() -> None:
    """glibc keeps freed heap pages in RSS; hand them back so RSS during training shows what training holds."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc (macOS, musl): RSS then also counts freed loading memory
        pass


def check_facts(by_case: dict[str, dict], quick: bool) -> list[dict]:
    facts = []

    def fact(name: str, a: str, b: str, key: str, asserted: bool = True):
        if a in by_case and b in by_case and "skipped" not in by_case[a] and "skipped" not in by_case[b]:
            lhs, rhs = by_case[a][key], by_case[b][key]
            facts.append(
                {
                    "fact": name,
                    "lhs": lhs,
                    "rhs": rhs,
                    "ratio": lhs / rhs if rhs else None,
                    "holds": lhs < rhs,
                    "asserted": asserted,
                }
            )
        else:
            facts.append({"fact": name, "holds": None, "skipped": f"needs cases {a} and {b}"})

    fact("qlora model bytes < lora model bytes", "qlora", "lora", "model_mb")
    if not quick:  # on model=tiny the interpreter and libraries dwarf the weights: RSS says nothing there
        # GPU: max allocated. CPU: private (anonymous) RSS - LoRA's float weights stay memory-mapped from the
        # safetensors file, so plain RSS counts them as page cache while QLoRA's packed copy is private memory;
        # plain RSS is reported beside it as a second, informational line.
        lora = by_case.get("lora", {})
        key = ("train_peak_cuda_mb" if lora.get("train_peak_cuda_mb")
               else "train_peak_anon_rss_mb" if lora.get("train_peak_anon_rss_mb") else "train_peak_rss_mb")
        fact(f"qlora training peak memory < lora ({key})", "qlora", "lora", key)
        if key != "train_peak_rss_mb":
            fact("qlora training peak RSS incl. file pages < lora (informational)", "qlora", "lora",
                 "train_peak_rss_mb", asserted=False)
    fact("galore optimizer state < adamw optimizer state", "galore", "full_adamw", "optimizer_state_mb")
    return facts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--data-dir", default=None, help="task data folder; default $LORA_LAB_DATA/<task>")
    p.add_argument("--cases", default="lora,qlora,full_adamw,galore")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=64)
    p.add_argument("--galore-rank", type=int, default=None)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--override", action="append", default=[])
    p.add_argument("--quick", action="store_true", help="model=tiny task=arith, galore rank 8")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child mode
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.task, args.galore_rank = "tiny", "arith", args.galore_rank or 8
        args.override = ["task.num_train=32", "task.num_test=4", *args.override]
    if args.task == "gsm8k" and not args.data_dir:
        root = os.environ.get("LORA_LAB_DATA")
        args.data_dir = str(Path(root) / "gsm8k") if root else None
    if args.case:
        print("CASE_RESULT " + json.dumps(run_case(args)), flush=True)
        return 0
    if args.task == "gsm8k" and not (args.data_dir and Path(args.data_dir).exists()):
        print(
            f"bench_memory: skipped — GSM8K data not found (pass --data-dir or set LORA_LAB_DATA); got {args.data_dir!r}"
        )
        return 0

    from lora_lab.methods import METHODS

    child_argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--quick"]
    results: dict[str, dict] = {}
    for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
        try:
            METHODS.get(CASES[case])
        except Exception as err:  # noqa: BLE001 — another engineer's method may not exist yet
            results[case] = {"case": case, "skipped": f"method {CASES[case]!r} not importable: {err}"}
            print(f"  {case:11s} skipped: {results[case]['skipped']}")
            continue
        started = time.perf_counter()
        if args.quick:  # no RSS fact in quick mode, so the cases may share this process (CI time)
            args.case = case
            results[case] = run_case(args)
            r = results[case]
            print(
                f"  {case:11s} model {r['model_mb']:8.2f} MB  optimizer {r['optimizer_state_mb']:8.2f} MB  "
                f"({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
            continue
        cmd = [
            sys.executable,
            __file__,
            *child_argv,
            "--case",
            case,
            "--model",
            args.model,
            "--task",
            args.task,
            *(["--galore-rank", str(args.galore_rank)] if args.galore_rank else []),
            *sum((["--override", o] for o in args.override if o not in child_argv), []),
        ]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        # glibc's dynamic mmap threshold turns the freed per-layer temporaries of a training step (dequantised
        # 4-bit weights, activations) into fragmented heap that stays in RSS; a fixed threshold measures what
        # the step holds. Measured: it also lowers LoRA's peak (see docs/performance.md).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": os.environ.get("MALLOC_MMAP_THRESHOLD_", "131072")}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("CASE_RESULT ")), None)
        if proc.returncode != 0 or line is None:
            results[case] = {
                "case": case,
                "skipped": f"failed (exit {proc.returncode}): {proc.stderr.strip()[-400:]}",
            }
            print(f"  {case:11s} FAILED: {results[case]['skipped']}")
            continue
        results[case] = json.loads(line[len("CASE_RESULT ") :])
        r = results[case]
        print(
            f"  {case:11s} model {r['model_mb']:8.1f} MB  optimizer {r['optimizer_state_mb']:8.2f} MB  "
            f"train peak RSS {r['train_peak_rss_mb']:8.0f} MB  (anon {r.get('train_peak_anon_rss_mb') or 0:6.0f})  process peak {r['process_peak_rss_mb']:8.0f} MB  "
            f"({time.perf_counter() - started:.0f}s)",
            flush=True,
        )

    facts = check_facts(results, args.quick)
    print()
    for f in facts:
        state = "SKIP" if f["holds"] is None else ("OK  " if f["holds"] else "FAIL" if f["asserted"] else "no  ")
        detail = f.get("skipped") or f"{f['lhs']:.2f} vs {f['rhs']:.2f} (ratio {f['ratio']:.3f})"
        print(f"[{state}] {f['fact']}: {detail}")
    record = {
        "benchmark": "memory",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_memory.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model,
        "task": args.task,
        "device": args.device,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "cases": results,
        "facts": facts,
    }
    out = Path(args.out) if args.out else RESULTS / f"memory_{args.model}_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    return 1 if any(f["holds"] is False and f.get("asserted", True) for f in facts) else 0


if __name__ == "__main__":
    sys.exit(main())
