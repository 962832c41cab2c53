"""The small table printed at the end of a run: the score, metric before → after, time, throughput, parameters.

Every number stands under its own name: a stage that was not measured is shown as `—`, never filled in from
another stage, and the score names the stage it comes from (or says why there is none).
"""

from __future__ import annotations

from typing import Any

MISSING = "—"


def _fmt(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def score_text(metrics: dict[str, Any]) -> str:
    """`0.36 (after: accuracy)`, or `not measured (eval.after=false)`."""
    score = metrics.get("score")
    if score is None:
        return str(metrics.get("score_note") or "not measured")
    where = ": ".join(str(metrics[k]) for k in ("score_stage", "primary_metric") if metrics.get(k))
    return f"{_fmt(score)} ({where})" if where else _fmt(score)


def summary_table(metrics: dict[str, Any]) -> str:
    rows: list[tuple[str, str]] = [("status", str(metrics.get("status")))]
    for key in ("method", "task", "model"):
        if key in metrics:
            rows.append((key, str(metrics[key])))
    if metrics.get("status") == "ok" or "score" in metrics:
        rows.append(("score", score_text(metrics)))
    befores = {k[len("before_"):]: v for k, v in metrics.items() if k.startswith("before_")}
    afters = {k[len("after_"):]: v for k, v in metrics.items() if k.startswith("after_")}
    skip = {"eval_examples", "eval_seconds", "eval_examples_per_s"}
    for name in sorted(set(befores) | set(afters)):
        if name in skip:
            continue
        rows.append((name, f"{_fmt(befores.get(name))} → {_fmt(afters.get(name))}"))
    for key, value in sorted(metrics.items()):
        if key.startswith("eval_") and key not in {"eval_examples_per_s", "eval_seconds"}:
            rows.append((key, _fmt(value)))
    for key in ("trainable_params", "total_params", "train_steps", "first_train_loss", "final_train_loss",
                "train_seconds", "train_tokens_per_s", "peak_rss_mb", "job_seconds"):
        if key in metrics:
            rows.append((key, _fmt(metrics[key])))
    if metrics.get("ignored_keys"):
        rows.append(("ignored_keys", ", ".join(map(str, metrics["ignored_keys"]))))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
