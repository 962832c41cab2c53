"""Training throughput: the lora-lab loop against the common `transformers.Trainer` + `peft` loop, same process.

Both sides train the same base model (one load, deep-copied per run), the same LoRA config (`method.*`), the
same effective batch (batch_size x grad_accum), the same optimiser settings and number of steps on the same
examples. Runs are interleaved A/B/A/B (`--repeats`) so a noisy, shared machine slows both alike; the table
reports ratios against the baseline from the same round, then their median.

Baseline ("seed-style"): every example tokenised with `padding="max_length"` (train.max_seq_len, 512) and
loss masked to the answer (prompt and padding = -100), no length grouping, full-vocabulary logits at every
position, `Trainer` with its default random sampler, fp32 on CPU / bf16 autocast on GPU like lora-lab.
lora-lab path: dynamic padding, length-grouped batches, token-weighted accumulation, answer-only logits
(+ optional --compile / --gradient-checkpointing). Ablations: `no_grouping`, `no_answer_only`.

Tokens/s counts REAL (non-pad) tokens on both sides — the useful work; the baseline also pays for padding.
Step time and tokens/s skip each run's first `--warmup` steps. Peak memory: RSS high-water mark per run on
CPU (sampled), `torch.cuda.max_memory_allocated` on GPU.

    python benchmarks/bench_train.py                                   # SmolLM2-135M, GSM8K (needs data)
    python benchmarks/bench_train.py --quick                           # model=tiny, task=arith, seconds
    python benchmarks/bench_train.py --device cuda --precision bfloat16 --model-shape mistral_7b
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# LORA_LAB_BENCH_RESULTS: write elsewhere (tests use a tmp dir so the committed results stay as measured)
RESULTS = Path(os.environ.get("LORA_LAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
SHAPES = {  # random-weight models built from a config (model=tiny's builder with these sizes)
    "mistral_7b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=4096,
        initializer_range=0.02,
    ),
    "smollm2_135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        initializer_range=0.02,
    ),
}
VARIANTS = {
    "lora_lab": [],
    "baseline": None,  # transformers.Trainer
    "no_grouping": ["train.group_by_length=false"],
    "no_answer_only": ["train.answer_only_logits=false"],
    "compile": ["train.compile=true"],
    "grad_ckpt": ["train.gradient_checkpointing=true"],
}


def build_cfg(args, extra: list[str]):
    from lora_lab.config.compose import compose_config
    from lora_lab.config.validate import validate_config

    overrides = [
        f"model={args.model}",
        f"task={args.task}",
        f"method={args.method}",
        f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}",
        f"train.grad_accum={args.grad_accum}",
        f"train.max_seq_len={args.max_length}",
        f"hardware.precision={args.precision}",
        "train.warmup_ratio=0.0",
        "method.dropout=0.0",
        *args.override,
        *extra,
    ]
    if args.device == "cuda":
        overrides.append("hardware=gpu")
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    if args.model_shape:
        overrides += [f"model.tiny.{k}={v}" for k, v in SHAPES[args.model_shape].items()]
    return validate_config(compose_config(overrides))


class PeakRSS:
    """RSS high-water mark of this process over a block (sampled: ru_maxrss never goes back down)."""

    def __enter__(self):
        from lora_lab.utils.memory import PeakMemory

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self._inner = PeakMemory(interval=0.02).__enter__()
        return self

    def __exit__(self, *exc):
        self._inner.__exit__(*exc)
        self.metrics = self._inner.metrics()


def run_lora_lab(base, features, cfg, tokenizer, device) -> dict:
    from lora_lab.methods import METHODS
    from lora_lab.training.loop import train

    method = METHODS.get(cfg.method.name)(cfg)
    torch.manual_seed(cfg.seed)
    model = method.apply(copy.deepcopy(base))
    step_times: list[float] = []
    step_tokens: list[int] = []

    def on_step(state, _):
        step_times.append(state.seconds - sum(step_times))
        step_tokens.append(state.tokens - sum(step_tokens))

    with PeakRSS() as mem:
        result = train(
            model, features, method, cfg, pad_id=tokenizer.pad_token_id, device=device, on_step=on_step
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
    del model
    return {
        "losses": result.losses,
        "step_times": step_times,
        "step_tokens": step_tokens,
        "padded_tokens": None,
        **mem.metrics,
    }


def run_trainer(base, examples, cfg, tokenizer, device, out_dir: Path) -> dict:
    """The seed-style loop: pad everything to max_length, Trainer + peft, answer-masked labels."""
    from peft import get_peft_model
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from lora_lab.methods.lora import lora_config
    from lora_lab.training.tokenize import tokenize_for_training

    t = cfg.train
    max_len = int(t.max_seq_len)
    rows = []
    for ex in examples:
        f = tokenize_for_training(tokenizer, ex, cfg.model.use_chat_template, max_len)
        pad = max_len - len(
            f.input_ids
        )  # right padding to max_length, as tokenizer(padding="max_length") does
        rows.append(
            {
                "input_ids": f.input_ids + [tokenizer.pad_token_id] * pad,
                "attention_mask": [1] * len(f.input_ids) + [0] * pad,
                "labels": f.labels + [-100] * pad,
            }
        )
    counted = {"real": 0, "padded": 0}

    def collator(batch):
        out = {k: torch.tensor([r[k] for r in batch]) for k in ("input_ids", "attention_mask", "labels")}
        counted["real"] += int(out["attention_mask"].sum())
        counted["padded"] += out["input_ids"].numel()
        return out

    step_times: list[float] = []
    step_tokens: list[int] = []

    class Clock(TrainerCallback):
        """Step = previous step's end to this one's (Trainer fetches a step's micro-batches before
        on_step_begin, so that span includes collation — as lora-lab's step time does)."""

        def on_train_begin(self, args, state, control, **kw):
            self.t0, self.n0 = time.perf_counter(), counted["real"]

        def on_step_end(self, args, state, control, **kw):
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            step_times.append(now - self.t0)
            step_tokens.append(counted["real"] - self.n0)
            self.t0, self.n0 = now, counted["real"]

    torch.manual_seed(cfg.seed)
    model = get_peft_model(copy.deepcopy(base), lora_config(cfg.method))
    bf16 = device.type == "cuda" and cfg.hardware.precision == "bfloat16"
    targs = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=int(t.batch_size),
        gradient_accumulation_steps=int(t.grad_accum),
        max_steps=int(t.max_steps),
        learning_rate=float(cfg.method.get("lr") or t.lr),
        weight_decay=float(t.weight_decay),
        lr_scheduler_type=str(t.scheduler),
        warmup_steps=0,
        max_grad_norm=float(t.max_grad_norm),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        bf16=bf16,
        use_cpu=device.type != "cuda",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        seed=int(cfg.seed),
        disable_tqdm=True,
        gradient_checkpointing=bool(t.gradient_checkpointing),
    )
    trainer = Trainer(
        model=model, args=targs, train_dataset=rows, data_collator=collator, callbacks=[Clock()]
    )
    trainer.remove_callback(PrinterCallback)
    with PeakRSS() as mem:
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    del trainer, model
    return {
        "losses": losses,
        "step_times": step_times,
        "step_tokens": step_tokens,
        "padded_tokens": counted["padded"],
        **mem.metrics,
    }


@torch.no_grad()
def objective_check(model, features, tokenizer, cfg, device, n: int = 4) -> dict:
    """Same examples, two ways: lora-lab's loss (left-padded, logits only over the answer window) and the
    baseline's (right-padded to max_length, full logits, HF's shifted CE). Equal up to float noise means the
    two loops optimise the same objective, so their loss curves differ only by data order and noise."""
    from lora_lab.training.batching import collate
    from lora_lab.training.loss import model_loss

    batch = features[:n]
    model.eval()
    ours = collate(batch, tokenizer.pad_token_id, left=True)
    ours = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in ours.items()}
    lab = float(model_loss(model, ours, answer_only_logits=True))
    width = int(cfg.train.max_seq_len)
    ids = torch.tensor([f.input_ids + [tokenizer.pad_token_id] * (width - len(f.input_ids)) for f in batch])
    mask = torch.tensor([[1] * len(f.input_ids) + [0] * (width - len(f.input_ids)) for f in batch])
    labels = torch.tensor([f.labels + [-100] * (width - len(f.labels)) for f in batch])
    base = float(
        model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
    )
    return {"examples": n, "lora_lab_loss": lab, "baseline_loss": base, "abs_diff": abs(lab - base)}


def summarise(run: dict, warmup: int) -> dict:
    times, tokens = run["step_times"][warmup:], run["step_tokens"][warmup:]
    secs = sum(times)
    return {
        "tokens_per_s": sum(tokens) / secs if secs else float("nan"),
        "step_s": statistics.median(times) if times else float("nan"),
        "first_loss": run["losses"][0] if run["losses"] else float("nan"),
        "last_loss": run["losses"][-1] if run["losses"] else float("nan"),
        "peak_rss_mb": run.get("peak_rss_mb"),
        "peak_cuda_allocated_mb": run.get("peak_cuda_allocated_mb"),
    }


def mfu(tokens_per_s: float, n_params: int, n_trainable: int, peak_flops: float | None) -> dict:
    """Model FLOPs utilisation for LoRA: forward 2N, backward through activations 2N, weight gradients only
    for the trainable (adapter) weights 2·N_trainable  ->  FLOPs/token = 4N + 2N_trainable (full FT: 6N).
    Attention-score FLOPs are left out (small next to 4N for these lengths)."""
    per_token = 4 * n_params + 2 * n_trainable
    achieved = per_token * tokens_per_s
    return {
        "flops_per_token": per_token,
        "achieved_tflops": achieved / 1e12,
        "mfu": achieved / peak_flops if peak_flops else None,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument(
        "--model-shape",
        choices=sorted(SHAPES),
        default=None,
        help="random weights of this shape (sets --model tiny, char tokenizer)",
    )
    p.add_argument("--method", default="lora")
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--data-dir", default=None, help="task data folder; default $LORA_LAB_DATA/<task>")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1, help="first steps of each run not timed")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--train-limit", type=int, default=256, help="examples to draw batches from")
    p.add_argument("--repeats", type=int, default=2, help="A/B rounds, interleaved")
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma list of {sorted(VARIANTS)}",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default=None, help="float32 (cpu default) | bfloat16 (cuda default)")
    p.add_argument(
        "--peak-tflops", type=float, default=None, help="device peak (e.g. 989 for H100 bf16 dense)"
    )
    p.add_argument("--override", action="append", default=[], help="extra Hydra override, repeatable")
    p.add_argument("--quick", action="store_true", help="model=tiny task=arith, 3 steps, 1 round")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    if args.quick:
        args.model, args.task, args.steps, args.repeats, args.train_limit = "tiny", "arith", 2, 1, 32
        args.warmup = 0
        args.variants = args.variants or "lora_lab,baseline"
        args.override = ["task.num_train=64", "task.num_test=8", *args.override]
    if args.model_shape:
        args.model = "tiny"
    args.precision = args.precision or ("bfloat16" if args.device == "cuda" else "float32")
    if args.task == "gsm8k" and not args.data_dir:
        root = os.environ.get("LORA_LAB_DATA")
        args.data_dir = str(Path(root) / "gsm8k") if root else None
    if args.task == "gsm8k" and not (args.data_dir and Path(args.data_dir).exists()):
        print(
            f"bench_train: skipped — GSM8K data not found (pass --data-dir or set LORA_LAB_DATA); "
            f"got {args.data_dir!r}"
        )
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_train: skipped — --device cuda but no CUDA device")
        return 0

    from lora_lab.models import load_model_and_tokenizer
    from lora_lab.tasks import TASKS
    from lora_lab.training.featurizers import featurizer_for

    args.variants = args.variants or "lora_lab,baseline,no_grouping,no_answer_only"
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    device = torch.device(args.device)
    cfg0 = build_cfg(args, [])
    task = TASKS.get(cfg0.task.name)(cfg0.task)
    examples = task.train_examples()[: args.train_limit]
    base, tokenizer = load_model_and_tokenizer(cfg0)
    base.to(device=device)
    attn = getattr(base.config, "_attn_implementation", None)
    n_params = sum(p.numel() for p in base.parameters())
    featurize = featurizer_for(cfg0.model.kind)
    features = [
        featurize(tokenizer, ex, cfg0.model.use_chat_template, cfg0.train.max_seq_len) for ex in examples
    ]
    lengths = sorted(len(f.input_ids) for f in features)
    print(
        f"model={cfg0.model.name}{' shape=' + args.model_shape if args.model_shape else ''} params={n_params / 1e6:.1f}M "
        f"attn={attn} task={cfg0.task.name} examples={len(features)} len median={lengths[len(lengths) // 2]} "
        f"max={lengths[-1]} | batch {args.batch_size} x accum {args.grad_accum}, {args.steps} steps, "
        f"{args.repeats} rounds, threads={torch.get_num_threads()}",
        flush=True,
    )

    check = objective_check(base, features, tokenizer, cfg0, device)
    print(
        f"objective check on {check['examples']} examples (base model): lora-lab {check['lora_lab_loss']:.6f} "
        f"vs baseline {check['baseline_loss']:.6f} (|diff| {check['abs_diff']:.2e})",
        flush=True,
    )
    rounds: list[dict[str, dict]] = []
    for r in range(args.repeats):
        this: dict[str, dict] = {}
        for name in variants:
            started = time.perf_counter()
            if VARIANTS[name] is None:
                cfg = build_cfg(args, [])
                raw = run_trainer(
                    base, examples, cfg, tokenizer, device, Path(tempfile.mkdtemp(prefix="bench-trainer-"))
                )
            else:
                cfg = build_cfg(args, VARIANTS[name])
                raw = run_lora_lab(base, features, cfg, tokenizer, device)
            this[name] = {**summarise(raw, args.warmup), "raw": raw}
            print(
                f"  round {r + 1} {name:15s} {this[name]['tokens_per_s']:9.1f} tok/s  step {this[name]['step_s']:.3f}s"
                f"  loss {this[name]['first_loss']:.3f} -> {this[name]['last_loss']:.3f}"
                f"  ({time.perf_counter() - started:.0f}s)",
                flush=True,
            )
            gc.collect()
        rounds.append(this)

    n_trainable = None
    table = []
    for name in variants:
        rows = [rd[name] for rd in rounds]
        ratio = (
            [
                rd[name]["tokens_per_s"] / rd["baseline"]["tokens_per_s"]
                for rd in rounds
                if rd["baseline"]["tokens_per_s"] > 0
            ]
            if "baseline" in variants
            else []
        )
        entry = {
            "variant": name,
            "tokens_per_s": statistics.median(x["tokens_per_s"] for x in rows),
            "step_s": statistics.median(x["step_s"] for x in rows),
            "speedup_vs_baseline": statistics.median(ratio) if ratio else None,
            "speedup_per_round": ratio,
            "first_loss": [x["first_loss"] for x in rows],
            "last_loss": [x["last_loss"] for x in rows],
            "losses": [x["raw"]["losses"] for x in rows],
            "peak_rss_mb": max((x["peak_rss_mb"] or 0) for x in rows),
            "peak_cuda_allocated_mb": max((x["peak_cuda_allocated_mb"] or 0) for x in rows) or None,
        }
        table.append(entry)
    if args.method in ("lora", "qlora"):
        from peft import get_peft_model

        from lora_lab.methods.lora import lora_config

        probe = get_peft_model(copy.deepcopy(base), lora_config(cfg0.method))
        n_trainable = sum(p.numel() for p in probe.parameters() if p.requires_grad)
        del probe
    for entry in table:
        entry.update(
            mfu(
                entry["tokens_per_s"],
                n_params,
                n_trainable or 0,
                args.peak_tflops and args.peak_tflops * 1e12,
            )
        )

    print(
        f"\n{'variant':16s} {'tok/s':>9s} {'step s':>8s} {'x baseline':>11s} {'first loss':>11s} {'last loss':>10s} "
        f"{'peak MB':>9s}"
    )
    for e in table:
        mem = e["peak_cuda_allocated_mb"] or e["peak_rss_mb"]
        sp = f"{e['speedup_vs_baseline']:.2f}" if e["speedup_vs_baseline"] is not None else "-"
        print(
            f"{e['variant']:16s} {e['tokens_per_s']:9.1f} {e['step_s']:8.3f} {sp:>11s} "
            f"{statistics.mean(e['first_loss']):11.4f} {statistics.mean(e['last_loss']):10.4f} {mem:9.0f}"
        )
    if args.peak_tflops:
        print(
            f"MFU (4N+2N_trainable per token, peak {args.peak_tflops} TFLOP/s): "
            + ", ".join(f"{e['variant']}={e['mfu']:.1%}" for e in table)
        )

    record = {
        "benchmark": "train",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": cfg0.model.name,
        "model_shape": args.model_shape,
        "method": args.method,
        "task": cfg0.task.name,
        "attn_implementation": attn,
        "params": n_params,
        "trainable_params": n_trainable,
        "device": args.device,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "max_length": args.max_length,
        "baseline": "transformers.Trainer + peft, padding=max_length, answer-masked loss, no grouping",
        "tokens_counted": "real (non-pad) tokens",
        "objective_check": check,
        "results": table,
    }
    out = (
        Path(args.out)
        if args.out
        else RESULTS
        / f"train_{cfg0.model.name}{'_' + args.model_shape if args.model_shape else ''}_{args.method}_{cfg0.task.name}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
