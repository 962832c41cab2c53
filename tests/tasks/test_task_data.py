"""Every task reads its local files, and its examples become correctly masked training features."""

from __future__ import annotations

import json

import pytest

from lora_lab.config.validate import validate_config
from lora_lab.models.tiny import build_char_tokenizer
from lora_lab.tasks import TASKS
from lora_lab.training.tokenize import (
    IGNORE_INDEX,
    prompt_ids,
    render_prompt,
    tokenize_for_classification,
    tokenize_for_training,
)
from tests.helpers.lab_helpers import shared_data
from tests.helpers.task_cases import task_cfg

# task -> (train examples, eval examples) in the shared local copies
SIZES = {
    "gsm8k": (7473, 1319),
    "sst2": (60614, 872),
    "imdb": (2500, 2500),
    "agnews": (10001, 7600),
    "news_summary": (3000, 500),
    "sni": (33, 8),  # task1087_two_number_sum: 41 instances, 20% held out
}


def build(task: str, *extra: str):
    cfg = validate_config(task_cfg(task, "task.eval_limit=null", *extra))
    return TASKS.get(task)(cfg.task), cfg


@pytest.mark.parametrize("task", sorted(SIZES))
def test_local_split_sizes(task):
    built, _ = build(task)
    n_train, n_eval = SIZES[task]
    assert len(built.load_split(built.cfg.train_split)) == n_train
    assert len(built.eval_examples()) == n_eval


@pytest.mark.parametrize("task", [*sorted(SIZES), "wikitext2"])
def test_targets_are_masked(task):
    built, cfg = build(task)
    tokenizer = build_char_tokenizer()
    for example in built.train_examples()[:5]:
        features = tokenize_for_training(tokenizer, example, use_chat_template=False, max_len=100_000)
        assert len(features.input_ids) == len(features.labels)
        target = tokenizer(example.target, add_special_tokens=False)["input_ids"]
        if example.language_modeling:  # raw text: every token is learned, no prompt, no EOS
            assert features.input_ids == target and features.labels == target
            continue
        prompt = prompt_ids(tokenizer, render_prompt(tokenizer, example, False))
        assert features.input_ids == prompt + target + [tokenizer.eos_token_id]
        assert features.labels[:len(prompt)] == [IGNORE_INDEX] * len(prompt)
        assert features.labels[len(prompt):] == target + [tokenizer.eos_token_id]


def test_long_prompts_are_cut_from_the_left():
    built, _ = build("gsm8k")
    tokenizer = build_char_tokenizer()
    example = built.train_examples()[0]
    features = tokenize_for_training(tokenizer, example, use_chat_template=False, max_len=300)
    target = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert len(features.input_ids) == 300
    assert features.labels[-len(target):] == target


@pytest.mark.parametrize(("task", "labels"), [("sst2", {0, 1}), ("imdb", {0, 1}), ("agnews", {0, 1, 2, 3})])
def test_classification_examples(task, labels):
    built, _ = build(task)
    examples = built.eval_examples()
    assert {ex.label for ex in examples} == labels
    tokenizer = build_char_tokenizer()
    for ex in examples[:20]:
        assert ex.target == ex.choices[ex.label]
        assert ex.text and ex.text in ex.prompt and ex.prompt.startswith(built.cfg.instruction)
        features = tokenize_for_classification(tokenizer, ex, False, 64)
        assert features.label == ex.label and features.labels == [] and len(features.input_ids) <= 64


def test_imdb_line_breaks_and_agnews_entities_are_cleaned():
    imdb, _ = build("imdb")
    assert not any("<br" in ex.text for ex in imdb.eval_examples()[:500])
    agnews, _ = build("agnews")
    texts = [ex.text for ex in agnews.eval_examples()[:2000]]
    assert not any("#36;" in t or "\\" in t for t in texts) and any("$" in t for t in texts)


def test_news_summary_prompt_and_target():
    built, _ = build("news_summary")
    ex = built.eval_examples()[0]
    assert ex.target == "Bigg Boss 14's talent manager Pista Dhakad dies in road accident aged 24"
    assert "Pista Dhakad, who worked as a talent manager" in ex.prompt


def test_news_summary_reads_xsum_documents():
    built, _ = build("news_summary", "task.eval_split=xsum_test_sample")
    examples = built.eval_examples()
    assert len(examples) == 1000 and all(ex.target for ex in examples)


def test_gsm8k_reference_is_the_final_number():
    built, _ = build("gsm8k")
    ex = built.eval_examples()[0]
    assert ex.reference == ex.target.rsplit("####", 1)[1].strip().replace(",", "")


def test_wikitext2_blocks_rebuild_the_text_exactly():
    built, _ = build("wikitext2")
    blocks = built.eval_examples()
    lines = [json.loads(line)["text"] for line in
             (shared_data("wikitext2") / "wikitext-2-raw-v1.test.jsonl").read_text(encoding="utf-8").splitlines()]
    original, joined = "\n".join(lines), "\n".join(ex.target for ex in blocks)
    assert original.startswith(joined) and not original[len(joined):].strip()  # at most trailing blank lines
    assert blocks[0].target.startswith(" \n = Robert Boulter = ")
    assert all(ex.language_modeling and ex.prompt == "" for ex in blocks)
    assert all(len(ex.target) >= 1000 for ex in blocks[:-1])
    assert len(built._limited(blocks, 50, salt=2)) == 50


def test_wikitext2_training_chunks():
    built, _ = build("wikitext2", "task.train_chunk_chars=500")
    chunks = built.train_examples()
    assert len(chunks) > 100 and all(0 < len(ex.target) <= 500 and ex.language_modeling for ex in chunks)


def test_wikitext2_tokenised_variant():
    built, _ = build("wikitext2", "task.hub_config=wikitext-2-v1")
    blocks = built.eval_examples()
    assert "<unk>" in blocks[0].target and len(blocks) > 500
