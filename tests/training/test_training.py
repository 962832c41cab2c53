"""The shared training path on the tiny model: masking, padding, loss, learning, saving, reloading."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftModel

from lora_lab.jobs.context import JobContext
from lora_lab.jobs.finetune import finetune
from lora_lab.loggers import NoLogger
from lora_lab.models import load_model_and_tokenizer
from lora_lab.tasks.base import Example
from lora_lab.training.batching import batch_order, collate
from lora_lab.training.loss import model_loss
from lora_lab.training.tokenize import IGNORE_INDEX, tokenize_for_training
from tests.helpers.lab_helpers import validated_cfg


def test_prompt_is_masked_and_target_plus_eos_is_learned() -> None:
    cfg = validated_cfg()
    _, tok = load_model_and_tokenizer(cfg)
    features = tokenize_for_training(tok, Example(prompt="What is 2+2?", target="4"), False, 512)
    supervised = [t for t, lab in zip(features.input_ids, features.labels, strict=True) if lab != IGNORE_INDEX]
    assert supervised == tok("4", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert features.labels[0] == IGNORE_INDEX


def test_dynamic_padding_pads_to_the_batch_longest_only() -> None:
    from lora_lab.training.tokenize import Features

    batch = collate([Features([1, 2, 3], [-100, 2, 3]), Features([4, 5], [-100, 5])], pad_id=0)
    assert batch["input_ids"].shape == (2, 3)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    left = collate([Features([1, 2, 3], [-100, 2, 3]), Features([4, 5], [-100, 5])], pad_id=0, left=True)
    assert left["input_ids"].tolist() == [[1, 2, 3], [0, 4, 5]]


def test_length_grouping_reduces_padding() -> None:
    lengths = [5, 100, 6, 98, 7, 97, 8, 99] * 16
    grouped = next(batch_order(lengths, 4, seed=0, group_by_length=True))
    widths = [lengths[i] for i in grouped]
    assert max(widths) - min(widths) < 10


def test_answer_only_loss_equals_the_full_forward_loss() -> None:
    cfg = validated_cfg()
    model, tok = load_model_and_tokenizer(cfg)
    examples = [Example(prompt="Q" * n, target=str(n * 7)) for n in (3, 11, 20, 6)]
    features = [tokenize_for_training(tok, ex, False, 512) for ex in examples]
    with torch.no_grad():
        full = model_loss(model, collate(features, tok.pad_token_id), answer_only_logits=False)
        fast = model_loss(model, collate(features, tok.pad_token_id, left=True), answer_only_logits=True)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def _train_tiny(run_dir: Path, *overrides: str) -> tuple[dict, JobContext]:
    cfg = validated_cfg("train.max_steps=60", "train.lr=3e-2",
                        "method.target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]", "train.batch_size=8", "task.num_train=128",
                        "eval.before=false", "eval.after=false", *overrides)
    ctx = JobContext(cfg=cfg, run_dir=run_dir, device=torch.device("cpu"), logger=NoLogger(cfg, run_dir))
    return finetune(ctx), ctx


def test_tiny_lora_learns_and_changes_outputs_and_reloads_with_plain_peft(run_dir: Path) -> None:
    metrics, ctx = _train_tiny(run_dir)
    assert metrics["final_train_loss"] < 0.75 * metrics["first_train_loss"]
    assert 0 < metrics["trainable_params"] < metrics["total_params"]

    adapter = run_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and isinstance(config["target_modules"], list | str)
    assert (adapter / "adapter_model.safetensors").is_file()

    base, tok = load_model_and_tokenizer(ctx.cfg)
    ids = tok(["Ava has 3 apples.", "How many?"], return_tensors="pt", padding=True)
    with torch.no_grad():
        base_logits = base(**ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter))
        tuned_logits = tuned(**ids).logits
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-4)  # the adapter changes outputs

    # a second, independent reload gives the very same logits, and merging changes nothing
    again, _ = load_model_and_tokenizer(ctx.cfg)
    reloaded = PeftModel.from_pretrained(again, str(adapter))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).logits, tuned_logits, rtol=0, atol=1e-6)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(**ids).logits, tuned_logits, rtol=1e-4, atol=1e-4)


def test_gradient_accumulation_matches_one_big_batch(run_dir: Path) -> None:
    # 8 examples: one batch of 8, or two micro-batches of 4 — the same examples in the first step
    one, _ = _train_tiny(run_dir / "a", "task.num_train=8", "train.max_steps=3", "train.batch_size=8", "train.grad_accum=1",
                         "train.group_by_length=false", "method.dropout=0")
    two, _ = _train_tiny(run_dir / "b", "task.num_train=8", "train.max_steps=3", "train.batch_size=4", "train.grad_accum=2",
                         "train.group_by_length=false", "method.dropout=0")
    # same examples per step, same token-weighted loss → same first-step loss
    assert abs(one["first_train_loss"] - two["first_train_loss"]) < 1e-4


def test_micro_batches_split_a_batch_longest_rows_together() -> None:
    from lora_lab.training.batching import micro_batches

    lengths = [5, 9, 3, 7, 8, 1]
    assert micro_batches([0, 1, 2, 3, 4, 5], lengths, 2) == [[1, 4], [3, 0], [2, 5]]
    assert micro_batches([0, 1, 2], lengths, None) == [[0, 1, 2]]
    assert micro_batches([0, 1, 2], lengths, 8) == [[0, 1, 2]]


def test_micro_batching_trains_the_same_weights_as_the_whole_batch(run_dir: Path) -> None:
    """train.micro_batch_size only bounds the activations alive at once: with dropout off, every step's loss and
    the trained adapter equal the whole-batch run's (up to float summation order)."""
    from safetensors.torch import load_file

    common = ("task.num_train=16", "train.max_steps=3", "train.batch_size=8", "method.dropout=0")
    whole, _ = _train_tiny(run_dir / "whole", *common)
    micro, _ = _train_tiny(run_dir / "micro", *common, "train.micro_batch_size=3")
    assert abs(whole["first_train_loss"] - micro["first_train_loss"]) < 1e-5
    assert abs(whole["final_train_loss"] - micro["final_train_loss"]) < 1e-4
    a = load_file(run_dir / "whole" / "adapter" / "adapter_model.safetensors")
    b = load_file(run_dir / "micro" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
    # and the weights did move (the comparison is between two trained adapters, not two initial ones)
    assert whole["final_train_loss"] < whole["first_train_loss"]
