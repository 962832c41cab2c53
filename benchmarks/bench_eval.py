"""Benchmark: batched greedy evaluation (lora_lab.evaluation.generation) vs one `generate` call per example.

Same model, same prompts, same greedy settings and stop strings; reports wall time, throughput, the
throughput ratio and how often the two produce the same prediction (left padding and batching change float
rounding, so a near-tie can flip a greedy token now and then; agreement should be near 100%). The two modes
alternate chunk by chunk, so on a shared machine both see the same load.

    python benchmarks/bench_eval.py --quick                      # tiny random model, < 30 s
    python benchmarks/bench_eval.py --out bench_eval.json        # SmolLM2-135M-Instruct on CPU
    python benchmarks/bench_eval.py --task gsm8k --data-dir <dir with test.jsonl> --examples 32 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import StoppingCriteriaList  # noqa: E402

from lora_lab.config.compose import compose_config  # noqa: E402
from lora_lab.config.validate import validate_config  # noqa: E402
from lora_lab.evaluation.generation import StopOnStrings, cut_at_stop, eos_ids, generate_batched  # noqa: E402
from lora_lab.models import load_model_and_tokenizer  # noqa: E402
from lora_lab.tasks import TASKS  # noqa: E402
from lora_lab.training.tokenize import prompt_ids, render_prompt  # noqa: E402


def build(args: argparse.Namespace):
    overrides = [
        f"model={args.model}",
        f"task={args.task}",
        "method=none",
        f"task.eval_limit={args.examples}",
    ]
    if args.data_dir:
        overrides.append(f"task.data_dir={args.data_dir}")
    cfg = validate_config(compose_config(overrides))
    task = TASKS.get(cfg.task.name)(cfg.task)
    examples = task.eval_examples()
    model, tokenizer = load_model_and_tokenizer(cfg)
    model.eval()
    prompts = [
        prompt_ids(tokenizer, render_prompt(tokenizer, ex, cfg.model.use_chat_template)) for ex in examples
    ]
    return cfg, task, examples, model, tokenizer, prompts


@torch.no_grad()
def one_at_a_time(model, tokenizer, prompts, max_new_tokens: int, stop_strings) -> list[str]:
    """The baseline: a plain `generate` per example (no padding, batch of one), same greedy settings."""
    outputs = []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for prompt in prompts:
        ids = torch.tensor([prompt])
        extra = (
            {"stopping_criteria": StoppingCriteriaList([StopOnStrings(tokenizer, stop_strings, len(prompt))])}
            if stop_strings
            else {}
        )
        generated = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=pad_id,
            eos_token_id=eos_ids(model, tokenizer),
            repetition_penalty=1.0,
            **extra,
        )
        text = tokenizer.decode(generated[0, len(prompt) :], skip_special_tokens=True)
        outputs.append(cut_at_stop(text, stop_strings).strip())
    return outputs


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny random model, few examples (< 30 s)")
    parser.add_argument(
        "--model", default=None, help="model config (default smollm2_135m; tiny with --quick)"
    )
    parser.add_argument("--task", default="arith")
    parser.add_argument("--data-dir", default=None, help="task.data_dir for tasks that read local files")
    parser.add_argument("--examples", type=int, default=None, help="default 64 (16 with --quick)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default 32 (16 with --quick)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--out", default="bench_eval.json")
    args = parser.parse_args()
    args.model = args.model or ("tiny" if args.quick else "smollm2_135m")
    args.examples = args.examples or (16 if args.quick else 64)
    args.max_new_tokens = args.max_new_tokens or (16 if args.quick else 32)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg, task, examples, model, tokenizer, prompts = build(args)
    stops = list(task.stop_strings)
    one_at_a_time(model, tokenizer, prompts[:1], 2, stops)  # warm-up: first-call allocations, kernels

    # Interleaved A/B per chunk of `batch_size` examples: on a shared machine the load drifts, and both modes
    # then see the same conditions. Per-chunk ratios show the spread.
    batched, single, batched_s, single_s, ratios = [], [], 0.0, 0.0, []
    for start in range(0, len(prompts), args.batch_size):
        chunk = prompts[start : start + args.batch_size]
        out_b, sec_b = timed(
            lambda chunk=chunk: generate_batched(
                model,
                tokenizer,
                chunk,
                max_new_tokens=args.max_new_tokens,
                batch_size=args.batch_size,
                stop_strings=stops,
                desc="batched",
            )
        )
        out_s, sec_s = timed(
            lambda chunk=chunk: one_at_a_time(model, tokenizer, chunk, args.max_new_tokens, stops)
        )
        batched += out_b
        single += out_s
        batched_s += sec_b
        single_s += sec_s
        ratios.append(sec_s / sec_b)
        print(
            f"chunk {start // args.batch_size}: batched {sec_b:.1f}s, one at a time {sec_s:.1f}s ({sec_s / sec_b:.2f}x)",
            flush=True,
        )

    agree = sum(a == b for a, b in zip(batched, single, strict=True)) / len(prompts)
    primary = task.primary_metric

    def score(predictions: list[str]) -> float:
        return task.aggregate([task.score(p, ex) for p, ex in zip(predictions, examples, strict=True)])[
            primary
        ]

    rows = [
        ("one at a time", single_s, score(single)),
        (f"batched (batch {args.batch_size})", batched_s, score(batched)),
    ]
    result = {
        "model": cfg.model.name,
        "task": cfg.task.name,
        "examples": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "mean_prompt_tokens": sum(map(len, prompts)) / len(prompts),
        "single_seconds": single_s,
        "batched_seconds": batched_s,
        "single_examples_per_s": len(prompts) / single_s,
        "batched_examples_per_s": len(prompts) / batched_s,
        "throughput_ratio": single_s / batched_s,
        "chunk_ratios": ratios,
        "agreement": agree,
        f"single_{primary}": rows[0][2],
        f"batched_{primary}": rows[1][2],
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "disagreements": [
            {"prompt": examples[i].prompt[-120:], "batched": b, "single": s}
            for i, (b, s) in enumerate(zip(batched, single, strict=True))
            if b != s
        ][:5],
    }
    print(
        f"\n{cfg.model.name} on {cfg.task.name}: {len(prompts)} examples, max_new_tokens={args.max_new_tokens}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'mode':<22}{'seconds':>10}{'examples/s':>12}{primary:>12}")
    for name, seconds, value in rows:
        print(f"{name:<22}{seconds:>10.2f}{len(prompts) / seconds:>12.2f}{value:>12.3f}")
    print(f"throughput ratio (batched / one at a time): {result['throughput_ratio']:.2f}x")
    print(f"same prediction on {agree:.1%} of examples")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
