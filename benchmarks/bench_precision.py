"""One LoRA training step in float32 vs CPU bf16 autocast (`hardware.precision=bfloat16`), same process,
alternating: the same model, adapter and batch, forward + backward (no optimiser step, so every round sees the
same weights); reports step times, their ratio, and the loss and gradient agreement.

    OMP_NUM_THREADS=1 python benchmarks/bench_precision.py --data-dir /path/to/gsm8k
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(os.environ.get("LORA_LAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="smollm2_135m")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="model=tiny, task=arith")
    args = p.parse_args(argv)
    from bench_peer import load_rows  # same model, rows and tokenisation as the peer benchmark

    from lora_lab.methods import METHODS
    from lora_lab.training.batching import collate
    from lora_lab.training.loop import autocast_context
    from lora_lab.training.loss import model_loss
    from lora_lab.utils import cpu

    args.task, args.rows, args.steps, args.precision = ("arith" if args.quick else "gsm8k"), args.batch_size, 1, "float32"
    if args.quick:
        args.model = "tiny"
    if args.task == "gsm8k" and not (args.data_dir and Path(args.data_dir).exists()):
        print("bench_precision: GSM8K data not found (--data-dir); skipped")
        return 0
    cfg, model, tokenizer, features = load_rows(args)
    method = METHODS.get("lora")(cfg)
    torch.manual_seed(0)
    model = method.apply(model)
    model.train()
    batch = collate(features[: args.batch_size], tokenizer.pad_token_id, left=True)
    params = method.trainable_parameters(model)
    times: dict[str, list[float]] = {"float32": [], "bfloat16": []}
    losses: dict[str, float] = {}
    grads: dict[str, torch.Tensor] = {}
    for _ in range(args.rounds + 1):  # the first round warms up
        for precision in times:
            model.zero_grad(set_to_none=True)
            started = time.perf_counter()
            with autocast_context(torch.device("cpu"), precision):
                loss = model_loss(model, batch, answer_only_logits=True)
            loss.backward()
            times[precision].append(time.perf_counter() - started)
            losses[precision] = float(loss.detach())
            grads[precision] = torch.cat([q.grad.flatten() for q in params])
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    cos = float(torch.nn.functional.cosine_similarity(grads["float32"], grads["bfloat16"], dim=0))
    record = {
        "benchmark": "bench_precision", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": args.model, "batch_size": args.batch_size, "tokens": int(batch["attention_mask"].sum()),
        "padded_shape": list(batch["input_ids"].shape), "threads": torch.get_num_threads(),
        "cpu_bf16_units": cpu.bf16_supported(), "step_seconds": times, "median_step_seconds": median,
        "bf16_speedup": median["float32"] / median["bfloat16"],
        "loss": losses, "loss_abs_diff": abs(losses["float32"] - losses["bfloat16"]),
        "adapter_dtype": str(params[0].dtype), "grad_cosine": cos,
    }
    out = RESULTS / f"precision_{args.model}_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("median_step_seconds", "bf16_speedup", "loss", "loss_abs_diff",
                                             "grad_cosine", "adapter_dtype")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
