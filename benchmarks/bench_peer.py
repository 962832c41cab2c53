"""lora-lab against the peer a user would pick: TRL's `SFTTrainer` with a peft `LoraConfig`.

Same base model (loaded by lora-lab's loader in both processes), same rows, same token ids (TRL receives the
rows lora-lab tokenised — `input_ids` + `completion_mask` — so both train on identical sequences and the
completion-only loss covers the same tokens), same LoRA (r, alpha, dropout, q/k/v/o), batch, steps, AdamW,
lr and linear schedule without warm-up, clip 1.0, matched precision (`--precision bfloat16`: lora-lab's CPU
autocast vs TRL's `bf16=True`). Everything else is TRL's default: dynamic padding, random sampler, gradient
checkpointing on (`SFTConfig`'s default; `--trl-no-grad-ckpt` turns it off).

Each side runs in its own process; the two run AT THE SAME TIME pinned to different cores (`taskset`), then
swapped, so a shared machine slows both alike; the ratio is the mean over both placements. Tokens/s counts
real (non-pad: attention-mask) tokens on both sides, from step 2 on (step 1 warms up). Peak RSS is each
process's `ru_maxrss` (model load included — the same loader on both sides). Loss curves: the means over
steps 1-10 and 11-20 must agree within noise (the two samplers order the rows differently).

    python benchmarks/bench_peer.py --data-dir /path/to/gsm8k             # SmolLM2-135M, GSM8K, fp32
    python benchmarks/bench_peer.py --data-dir ... --precision bfloat16
    python benchmarks/bench_peer.py --quick                               # model=tiny, seconds, no pinning
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")

RESULTS = Path(os.environ.get("LORA_LAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
SIDES = ("lora_lab", "trl")  # --against lora_lab: ("lora_lab", "baseline"), a lever against lora-lab without it


def build_cfg(args, extra: list[str] = ()):
    from lora_lab.config.compose import compose_config
    from lora_lab.config.validate import validate_config

    overrides = [
        f"model={args.model}", f"task={args.task}", "method=lora", f"train.max_steps={args.steps}",
        f"train.batch_size={args.batch_size}", f"hardware.precision={args.precision}", "train.warmup_ratio=0.0",
        *([f"task.num_train={args.rows}"] if args.task == "arith" else []),  # other tasks: sliced below
    ]
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    return validate_config(compose_config([*overrides, *extra]))


def load_rows(args, extra: list[str] = ()):
    """cfg, model, tokenizer and the first `--rows` training rows tokenised by lora-lab (prompt masked).
    `extra`: lora-lab overrides of this side (a lever under test); TRL's side always gets none."""
    from lora_lab.jobs.context import JobContext
    from lora_lab.jobs.steps import build_task
    from lora_lab.loggers import NoLogger
    from lora_lab.models import load_model_and_tokenizer
    from lora_lab.training.featurizers import featurizer_for

    cfg = build_cfg(args, extra)
    scratch = Path(tempfile.mkdtemp(prefix="bench_peer_"))
    task = build_task(JobContext(cfg=cfg, run_dir=scratch, device=None, logger=NoLogger(cfg, scratch)))
    examples = task.train_examples()[: args.rows]
    model, tokenizer = load_model_and_tokenizer(cfg)
    featurize = featurizer_for(cfg.model.kind)
    features = [featurize(tokenizer, ex, cfg.model.use_chat_template, cfg.train.max_seq_len) for ex in examples]
    return cfg, model, tokenizer, features


def run_lora_lab(args, extra: list[str] = ()) -> dict:
    import torch

    from lora_lab.methods import METHODS
    from lora_lab.training.loop import train

    cfg, model, tokenizer, features = load_rows(args, extra)
    method = METHODS.get("lora")(cfg)
    torch.manual_seed(cfg.seed)
    model = method.apply(model)
    times, tokens = [], []

    def on_step(state, _):
        times.append(state.seconds - sum(times))
        tokens.append(state.tokens - sum(tokens))

    result = train(model, features, method, cfg, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"),
                   on_step=on_step)
    return {"losses": result.losses, "step_seconds": times, "step_tokens": tokens, "overrides": list(extra)}


def run_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lora_lab.training.tokenize import IGNORE_INDEX

    cfg, model, tokenizer, features = load_rows(args)
    rows = Dataset.from_list([{"input_ids": f.input_ids, "completion_mask": [int(x != IGNORE_INDEX) for x in f.labels]}
                              for f in features])
    m = cfg.method
    peft_config = LoraConfig(r=int(m.r), lora_alpha=int(m.alpha), lora_dropout=float(m.dropout),
                             target_modules=list(m.target_modules), task_type="CAUSAL_LM")
    out = Path(tempfile.mkdtemp(prefix="bench_peer_trl_"))
    sft = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=float(cfg.train.lr), lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=float(cfg.train.max_grad_norm), optim="adamw_torch", bf16=args.precision == "bfloat16",
        completion_only_loss=True, gradient_checkpointing=not args.trl_no_grad_ckpt, use_cpu=True,
        logging_steps=1, save_strategy="no", report_to=[], seed=int(cfg.seed), dataloader_num_workers=0,
        disable_tqdm=True, max_length=int(cfg.train.max_seq_len),
    )
    torch.manual_seed(cfg.seed)
    trainer = SFTTrainer(model=model, args=sft, train_dataset=rows, processing_class=tokenizer,
                         peft_config=peft_config)
    counted = {"real": 0}
    collate = trainer.data_collator

    def counting_collator(batch):
        out_batch = collate(batch)
        mask = out_batch.get("attention_mask")
        counted["real"] += int(mask.sum()) if mask is not None else int(out_batch["input_ids"].numel())
        return out_batch

    trainer.data_collator = counting_collator
    times, tokens, losses = [], [], []

    class Clock(TrainerCallback):
        """A step = the previous step's end to this one's (it includes fetching the batch, as lora-lab's does)."""

        def on_train_begin(self, *a, **kw):
            self.t0, self.n0 = time.perf_counter(), counted["real"]

        def on_step_end(self, *a, **kw):
            now = time.perf_counter()
            times.append(now - self.t0)
            tokens.append(counted["real"] - self.n0)
            self.t0, self.n0 = now, counted["real"]

        def on_log(self, args_, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    trainer.add_callback(Clock())
    trainer.train()
    shutil.rmtree(out, ignore_errors=True)
    return {"losses": losses, "step_seconds": times, "step_tokens": tokens,
            "gradient_checkpointing": bool(sft.gradient_checkpointing), "trl_version": __import__("trl").__version__}


def worker(args) -> int:
    """One side in this process; its measurements (and peak RSS) go to `--out` as JSON."""
    started = time.perf_counter()
    if args.side == "trl":
        run = run_trl(args)
    else:  # lora_lab, or in lever mode the baseline lora-lab side
        run = run_lora_lab(args, args.overrides if args.side == "lora_lab" else args.against_overrides)
    timed_s, timed_tokens = sum(run["step_seconds"][1:]), sum(run["step_tokens"][1:])
    run.update({
        "side": args.side, "cpus": sorted(os.sched_getaffinity(0)),
        "tokens_per_s": timed_tokens / timed_s if timed_s > 0 else 0.0, "timed_steps": len(run["step_seconds"]) - 1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "wall_s": time.perf_counter() - started,
    })
    Path(args.out).write_text(json.dumps(run))
    return 0


def loss_means(losses: list[float]) -> dict:
    half = len(losses) // 2
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {f"steps_1_{half}": mean(losses[:half]), f"steps_{half + 1}_{len(losses)}": mean(losses[half:])}


def run_placement(args, cores: dict[str, int | None], scratch: Path, tag: str) -> dict:
    """Both sides at once, each pinned to its core (no pinning where `cores` has None)."""
    procs, outs = {}, {}
    for side in args.sides:
        outs[side] = scratch / f"{tag}_{side}.json"
        cmd = [sys.executable, __file__, "--worker", side, "--out", str(outs[side]), *args.passthrough]
        if cores[side] is not None:
            cmd = ["taskset", "-c", str(cores[side]), *cmd]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs[side] = subprocess.Popen(cmd, env=env)
    for side, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"bench_peer: the {side} worker failed (exit {proc.returncode})")
    return {side: {**json.loads(outs[side].read_text()), "core": cores[side]} for side in args.sides}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--task", default="gsm8k")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--rows", type=int, default=256, help="first N training rows")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--trl-no-grad-ckpt", action="store_true", help="turn off SFTConfig's default checkpointing")
    p.add_argument("--placements", type=int, default=2, choices=[1, 2], help="2: run, then swap the cores")
    p.add_argument("--quick", action="store_true", help="model=tiny, task=arith, 3 steps, no pinning")
    p.add_argument("--out", default=None)
    p.add_argument("--overrides", nargs="*", default=[], help="lora-lab overrides of the measured side (a lever)")
    p.add_argument("--against", default="trl", choices=["trl", "lora_lab"],
                   help="lora_lab: measure a lever, i.e. --overrides against lora-lab with --against-overrides")
    p.add_argument("--against-overrides", nargs="*", default=[], help="lora-lab overrides of the baseline side")
    p.add_argument("--worker", choices=[*SIDES, "baseline"], dest="side", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.task, args.steps, args.rows, args.batch_size = "tiny", "arith", 3, 32, 4
    if args.task == "gsm8k" and not args.data_dir:
        root = os.environ.get("LORA_LAB_DATA")
        args.data_dir = str(Path(root) / "gsm8k") if root else None
    args.sides = ("lora_lab", "trl" if args.against == "trl" else "baseline")
    if args.side:
        return worker(args)
    try:
        if args.against == "trl":
            import trl  # noqa: F401
    except ImportError:
        print("bench_peer: TRL is not installed (pip install 'lora-lab[bench]'); skipped")
        return 0
    if args.task == "gsm8k" and not (args.data_dir and Path(args.data_dir).exists()):
        print(f"bench_peer: GSM8K data not found (--data-dir or $LORA_LAB_DATA/gsm8k); skipped, got {args.data_dir!r}")
        return 0
    args.passthrough = [f"--model={args.model}", f"--task={args.task}", f"--rows={args.rows}",
                        f"--batch-size={args.batch_size}", f"--steps={args.steps}", f"--precision={args.precision}",
                        *([f"--data-dir={args.data_dir}"] if args.data_dir else []),
                        *(["--trl-no-grad-ckpt"] if args.trl_no_grad_ckpt else []),
                        "--overrides", *args.overrides, "--against-overrides", *args.against_overrides]
    cores = sorted(os.sched_getaffinity(0))
    pin = not args.quick and len(cores) >= 2 and shutil.which("taskset")
    a, b = args.sides
    layouts = [{a: cores[0], b: cores[1]}, {a: cores[1], b: cores[0]}] if pin else [{a: None, b: None}] * 2
    scratch = Path(tempfile.mkdtemp(prefix="bench_peer_runs_"))
    placements = [run_placement(args, layouts[i], scratch, f"p{i}") for i in range(args.placements)]
    ratios = [pl[a]["tokens_per_s"] / pl[b]["tokens_per_s"] for pl in placements]
    rss = [pl[a]["peak_rss_mb"] / pl[b]["peak_rss_mb"] for pl in placements]
    summary = {
        "tokens_per_s_ratio": sum(ratios) / len(ratios), "per_placement_ratio": ratios,
        "peak_rss_ratio": sum(rss) / len(rss),
        "loss_means": {side: [loss_means(pl[side]["losses"]) for pl in placements] for side in args.sides},
    }
    record = {
        "benchmark": "bench_peer", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model, "task": args.task, "rows": args.rows, "batch_size": args.batch_size, "steps": args.steps,
        "precision": args.precision, "pinned": bool(pin), "against": b, "overrides": args.overrides,
        "against_overrides": args.against_overrides, "machine": platform.processor() or platform.machine(),
        "summary": summary, "placements": placements,
    }
    suffix = "" if args.precision == "float32" else "_" + args.precision
    lever = "_".join(o.replace("train.", "").replace("=", "") for o in args.overrides) or "none"
    out = Path(args.out) if args.out else RESULTS / (
        f"peer_trl_{args.model}_{args.task}{suffix}.json" if b == "trl"
        else f"lever_{args.model}_{args.task}{suffix}_{lever}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"{'placement':>10} {a + ' tok/s':>15} {b + ' tok/s':>15} {'ratio':>6} {'RSS MB ' + a:>16} {b:>9}")
    for i, pl in enumerate(placements):
        x, y = pl[a], pl[b]
        print(f"{i:>10} {x['tokens_per_s']:>15.1f} {y['tokens_per_s']:>10.1f} {ratios[i]:>6.2f} "
              f"{x['peak_rss_mb']:>16.0f} {y['peak_rss_mb']:>7.0f}")
    print(f"tokens/s ratio (mean of placements): {summary['tokens_per_s_ratio']:.2f}; "
          f"peak RSS ratio: {summary['peak_rss_ratio']:.2f}; loss means: {json.dumps(summary['loss_means'])}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
