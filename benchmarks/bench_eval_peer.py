"""Evaluation against the peer a user would run: lm-eval's HF backend (`HFLM.generate_until`).

Same model object, same rendered prompts (the chat template lora-lab applies), greedy, same new-token limit
and stop strings. lm-eval runs at its default `batch_size=1` and at the batch size lora-lab uses; lora-lab's
batched generation (`lora_lab.evaluation.generation.generate_batched`) is the other side. The modes
alternate chunk by chunk in one process, so a shared machine's load falls on all of them alike; the ratios
are of total wall time. Agreement = how often lm-eval's and lora-lab's predictions are the same text.

    pip install 'lora-lab[bench]'                     # lm-eval: a benchmark-only extra
    OMP_NUM_THREADS=1 python benchmarks/bench_eval_peer.py --examples 64
    python benchmarks/bench_eval_peer.py --quick      # tiny random model, seconds
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eval import build  # noqa: E402  (model, task and prompts exactly as bench_eval builds them)

from lora_lab.evaluation.generation import cut_at_stop, generate_batched  # noqa: E402
from lora_lab.training.tokenize import render_prompt  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def lm_eval_generate(lm, contexts: list[str], max_new_tokens: int, stops: list[str]) -> list[str]:
    from lm_eval.api.instance import Instance

    gen_kwargs = {"until": list(stops), "max_gen_toks": max_new_tokens, "do_sample": False}
    requests = [Instance(request_type="generate_until", doc={}, arguments=(c, dict(gen_kwargs)), idx=i)
                for i, c in enumerate(contexts)]
    return [cut_at_stop(text, stops).strip() for text in lm.generate_until(requests, disable_tqdm=True)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--model", default=None)
    p.add_argument("--task", default="arith")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--examples", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        print("bench_eval_peer: lm-eval is not installed (pip install 'lora-lab[bench]'); skipped")
        return 0
    args.model = args.model or ("tiny" if args.quick else "smollm2_135m")
    args.examples = args.examples or (8 if args.quick else 64)
    args.max_new_tokens = args.max_new_tokens or (8 if args.quick else 32)
    cfg, task, examples, model, tokenizer, prompts = build(args)
    stops = list(task.stop_strings)
    contexts = [render_prompt(tokenizer, ex, cfg.model.use_chat_template) for ex in examples]
    peers = {f"lm_eval_batch_{b}": HFLM(pretrained=model, tokenizer=tokenizer, batch_size=b, device="cpu")
             for b in (1, args.batch_size)}

    def ours(chunk_prompts):
        return generate_batched(model, tokenizer, chunk_prompts, max_new_tokens=args.max_new_tokens,
                                batch_size=args.batch_size, stop_strings=stops, desc="lora-lab")

    generate_batched(model, tokenizer, prompts[:2], max_new_tokens=2, batch_size=2, stop_strings=stops)  # warm-up
    outputs = {name: [] for name in ["lora_lab", *peers]}
    seconds = dict.fromkeys(outputs, 0.0)
    for start in range(0, len(prompts), args.batch_size):
        sl = slice(start, start + args.batch_size)
        for name in outputs:
            began = time.perf_counter()
            got = ours(prompts[sl]) if name == "lora_lab" else \
                lm_eval_generate(peers[name], contexts[sl], args.max_new_tokens, stops)
            seconds[name] += time.perf_counter() - began
            outputs[name] += got
        print(" ".join(f"{n} {s:.1f}s" for n, s in seconds.items()), flush=True)

    primary = task.primary_metric

    def score(predictions):
        return task.aggregate([task.score(x, ex) for x, ex in zip(predictions, examples, strict=True)])[primary]

    n = len(prompts)
    record = {
        "benchmark": "bench_eval_peer", "model": cfg.model.name, "task": cfg.task.name, "examples": n,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
        "lm_eval_version": __import__("lm_eval").__version__, "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "modes": {name: {"seconds": s, "examples_per_s": n / s, primary: score(outputs[name]),
                         "agreement_with_lora_lab": sum(a == b for a, b in zip(outputs[name], outputs["lora_lab"],
                                                                                   strict=True)) / n}
                  for name, s in seconds.items()},
    }
    record["speedup_vs"] = {name: seconds[name] / seconds["lora_lab"] for name in peers}
    out = Path(args.out) if args.out else (Path("/tmp") if args.quick else RESULTS) / \
        f"eval_peer_{cfg.model.name}_{cfg.task.name}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{'mode':<20}{'s':>8}{'ex/s':>8}{primary:>10}{'agree':>8}")
    for name, row in record["modes"].items():
        print(f"{name:<20}{row['seconds']:>8.1f}{row['examples_per_s']:>8.2f}{row[primary]:>10.3f}"
              f"{row['agreement_with_lora_lab']:>8.0%}")
    print("lora-lab speed-up: " + ", ".join(f"{k} {v:.2f}x" for k, v in record["speedup_vs"].items()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
