"""Benchmark: a trained adapter exported to GGUF (lora-lab-export) answers its task in llama.cpp as it does in
lora-lab.

The adapter's own task (the default run: `arith`, 50 held-out problems) is evaluated twice per GGUF type:
by lora-lab's evaluator (`EVALUATORS[task.eval_mode]`: the run's chat template, greedy, stop strings, answer
extraction, accuracy) on the adapter, and by llama.cpp (llama-cpp-python) on the exported file with the same
rendered prompts (token ids checked equal), greedy, stopping on an end-of-generation token or the task's stop
strings, then cut, stripped and scored by the same `task.score`. Reported per type: file size, how many answers
are identical (to lora-lab's batched evaluation, and to the same greedy generation one prompt at a time),
accuracy on both sides, llama.cpp's single-stream tokens/s and lora-lab's (transformers)
tokens/s (the adapter unmerged, as lora-lab evaluates it) on the same 64-token greedy generation, both with
`--threads` threads, measured in alternating rounds.

    python benchmarks/bench_export_llamacpp.py outputs/runs/<run>/adapter          # the default run's adapter
    python benchmarks/bench_export_llamacpp.py <adapter> --types f16,q8_0 --threads 2

Needs llama-cpp-python (docs/export.md: how to build it portably). Writes
benchmarks/results/export_llamacpp_<model>_<task>.json (or under $LORA_LAB_BENCH_RESULTS), atomically.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lora_lab.commands.export import export_to_gguf  # noqa: E402
from lora_lab.commands.saved_run import load_with_adapter  # noqa: E402
from lora_lab.evaluation.generation import cut_at_stop, generate_batched  # noqa: E402
from lora_lab.evaluation.registry import EVALUATORS  # noqa: E402
from lora_lab.tasks import TASKS  # noqa: E402
from lora_lab.training.tokenize import prompt_ids, render_prompt  # noqa: E402
from lora_lab.utils.io import atomic_write_json, read_json  # noqa: E402

RESULTS = Path(os.environ.get("LORA_LAB_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
SPEED_TOKENS = 64  # the single-stream speed probe: this many greedy tokens, no stop


class LlamaCpp:
    """One exported file in llama.cpp, greedy, every prompt evaluated from an empty cache."""

    def __init__(self, path: Path, threads: int):
        import llama_cpp

        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                                   seed=0, verbose=False)
        self.add_bos = self.llm.metadata.get("tokenizer.ggml.add_bos_token") == "true"

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=self.add_bos, special=True)

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_strings=(), stop_on_eog: bool = True) -> list[int]:
        """Greedy ids after `prompt`, ending as lora-lab's generation ends: an end-of-generation token (not
        kept), a stop string in the text so far (kept, cut later), or `max_new_tokens`."""
        self.llm.reset()  # no prefix reuse from the previous prompt: each answer is computed as from scratch
        out: list[int] = []
        for token in self.llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0,
                                       reset=True):
            if stop_on_eog and self.lib.llama_token_is_eog(self.llm._model.vocab, token):
                break
            out.append(token)
            if len(out) >= max_new_tokens or (stop_strings and any(s in self.detokenize(out) for s in stop_strings)):
                break
        return out

    def detokenize(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.llm.close()


def lora_lab_answers(cfg, model, tokenizer, task, examples) -> tuple[dict, list[str]]:
    result = EVALUATORS.get(task.eval_mode)(model, tokenizer, task, examples, cfg, torch.device("cpu"),
                                            desc="eval (lora-lab)")
    return result.metrics, [r["prediction"] for r in result.records]


def llama_cpp_answers(cpp: LlamaCpp, texts: list[str], hf_prompts: list[list[int]], task, examples,
                      max_new_tokens: int) -> dict:
    answers, scores, prompt_mismatches, new_tokens = [], [], 0, 0
    started = time.perf_counter()
    for text, hf_prompt, example in zip(texts, hf_prompts, examples, strict=True):
        prompt = cpp.tokenize(text)
        prompt_mismatches += prompt != hf_prompt
        ids = cpp.greedy(prompt, max_new_tokens, task.stop_strings)
        new_tokens += len(ids)
        answer = cut_at_stop(cpp.detokenize(ids), task.stop_strings).strip()
        answers.append(answer)
        scores.append(task.score(answer, example))
    seconds = time.perf_counter() - started
    return {"answers": answers, "metrics": task.aggregate(scores), "prompt_mismatches": prompt_mismatches,
            "seconds": seconds, "new_tokens": new_tokens}


@torch.no_grad()
def hf_tokens_per_s(model, ids: list[int], repeats: int) -> float:
    tensor = torch.tensor([ids])
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        out = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=SPEED_TOKENS,
                             min_new_tokens=SPEED_TOKENS, do_sample=False, pad_token_id=0)
        best = max(best, (out.shape[1] - tensor.shape[1]) / (time.perf_counter() - started))
    return best


def cpp_tokens_per_s(cpp: LlamaCpp, ids: list[int], repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        out = cpp.greedy(ids, SPEED_TOKENS, stop_on_eog=False)
        best = max(best, len(out) / (time.perf_counter() - started))
    return best


def interleaved_speeds(cpp: LlamaCpp, model, ids: list[int], repeats: int) -> tuple[float, float]:
    """(llama.cpp, lora-lab) tokens/s, best of `repeats` A/B rounds: on a shared machine both see the same load."""
    cpp_best = hf_best = 0.0
    for _ in range(repeats):
        cpp_best = max(cpp_best, cpp_tokens_per_s(cpp, ids, 1))
        hf_best = max(hf_best, hf_tokens_per_s(model, ids, 1))
    return cpp_best, hf_best


def system_info() -> dict:
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"llama_cpp_python": llama_cpp.__version__, "llama_cpp_system_info": info, "cpu": cpu,
            "torch": torch.__version__, "python": platform.python_version(),
            "load_average_1min_at_end": os.getloadavg()[0], "cores": os.cpu_count()}


def run(args) -> dict:
    import transformers

    torch.set_num_threads(args.threads)
    cfg, model, tokenizer = load_with_adapter(args.adapter)
    task = TASKS.get(cfg.task.name)(cfg.task)
    examples = task.eval_examples()
    chat = bool(cfg.model.use_chat_template)
    texts = [render_prompt(tokenizer, ex, chat) for ex in examples]
    hf_prompts = [prompt_ids(tokenizer, t) for t in texts]
    max_new_tokens = cfg.eval.max_new_tokens or task.cfg.max_new_tokens

    started = time.perf_counter()
    hf_metrics, hf_answers = lora_lab_answers(cfg, model, tokenizer, task, examples)
    hf_seconds = time.perf_counter() - started
    # the same greedy generation one prompt at a time (no left padding), as llama.cpp runs it: tells a
    # difference that batching makes in lora-lab from one llama.cpp makes
    hf_single = generate_batched(model, tokenizer, hf_prompts, max_new_tokens=max_new_tokens, batch_size=1,
                                 stop_strings=task.stop_strings, device=torch.device("cpu"), desc="eval (batch 1)")
    single_same = sum(a == b for a, b in zip(hf_single, hf_answers, strict=True))
    print(f"lora-lab: {task.primary_metric} {hf_metrics[task.primary_metric]:.3f}")
    saved = read_json(args.adapter.parent / "metrics.json") or {}

    result = {
        "adapter": args.adapter.parent.name if args.adapter.name == "adapter" else args.adapter.name,
        "model": cfg.model.name, "task": cfg.task.name, "method": cfg.method.name,
        "examples": len(examples), "max_new_tokens": max_new_tokens, "stop_strings": list(task.stop_strings),
        "use_chat_template": chat, "threads": args.threads, "speed_tokens": SPEED_TOKENS,
        "lora_lab": {"metric": task.primary_metric, "accuracy": hf_metrics[task.primary_metric],
                     "run_accuracy_after": saved.get(f"after_{task.primary_metric}"),  # the run's own eval
                     "eval_seconds": hf_seconds, "eval_batch_size": cfg.eval.batch_size,
                     "batch_1_identical_answers": single_same,
                     "transformers": transformers.__version__},
        "types": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        for type_name in args.types:
            out = export_to_gguf(args.adapter, Path(scratch) / f"model-{type_name}.gguf", type_name)
            cpp = LlamaCpp(out, args.threads)
            got = llama_cpp_answers(cpp, texts, hf_prompts, task, examples, max_new_tokens)
            speed, hf_speed = interleaved_speeds(cpp, model, hf_prompts[0], args.repeats)
            cpp.close()
            same = sum(a == b for a, b in zip(got["answers"], hf_answers, strict=True))
            same_single = sum(a == b for a, b in zip(got["answers"], hf_single, strict=True))
            differing = [{"input": ex.prompt, "lora_lab": b, "lora_lab_batch_1": c, "llama_cpp": a}
                         for ex, a, b, c in zip(examples, got["answers"], hf_answers, hf_single, strict=True)
                         if a != b or a != c]
            row = {"file_mb": round(out.stat().st_size / 1e6, 1),
                   "identical_answers": same, "answer_agreement": same / len(examples),
                   "identical_answers_vs_batch_1": same_single,
                   "accuracy_llama_cpp": got["metrics"][task.primary_metric],
                   "accuracy_lora_lab": hf_metrics[task.primary_metric],
                   "prompt_token_mismatches": got["prompt_mismatches"],
                   "llama_cpp_tokens_per_s": speed, "lora_lab_tokens_per_s": hf_speed,
                   "speed_ratio": speed / hf_speed,
                   "llama_cpp_eval_seconds": got["seconds"], "llama_cpp_answer_tokens": got["new_tokens"],
                   "differing_answers": differing}
            result["types"][type_name] = row
            print(f"{type_name:>5}: {row['file_mb']:6.1f} MB  identical answers {same}/{len(examples)} "
                  f"({same_single} vs batch 1)  "
                  f"accuracy llama.cpp {row['accuracy_llama_cpp']:.3f} / lora-lab {row['accuracy_lora_lab']:.3f}  "
                  f"{speed:.1f} tokens/s (lora-lab {hf_speed:.1f})")
            out.unlink()
    result["conditions"] = system_info()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("adapter", type=Path, help="a trained adapter folder (outputs/runs/<run>/adapter)")
    p.add_argument("--types", type=lambda s: s.split(","), default=["f32", "f16", "bf16", "q8_0"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="speed probe: best of this many runs")
    p.add_argument("--out", type=Path, help="results JSON (default: results/export_llamacpp_<model>_<task>.json)")
    args = p.parse_args(argv)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed (docs/export.md says how to build it); skipped")
        return 0
    result = run(args)
    name = {"smollm2_135m": "smollm2"}.get(result["model"], result["model"])
    out = args.out or RESULTS / f"export_llamacpp_{name}_{result['task']}.json"
    atomic_write_json(out, result)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
