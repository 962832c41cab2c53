"""DistilBERT, the base of seed 003: its parameter counts on the real base shape, and the encoder pieces the
seed's three tasks need (masked-LM training features, pseudo-perplexity, a derived WikiText-2 train split)."""

from __future__ import annotations

import json

import pytest
import torch

from lora_lab.config.validate import validate_config
from lora_lab.evaluation.pseudo_perplexity import masked_token_nll
from lora_lab.jobs.steps import count_parameters
from lora_lab.methods import METHODS
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.structure import empty_model
from lora_lab.tasks import TASKS
from lora_lab.tasks.base import Example
from lora_lab.training.featurizers import featurizer_for
from lora_lab.training.tokenize import IGNORE_INDEX
from tests.helpers.lab_helpers import compose_cfg

# distilbert-base-uncased: vocabulary 30522, dim 768, 6 layers of 12 heads, FFN 3072, 512 positions
BASE_SHAPE = ["+model.tiny.vocab_size=30522", "model.tiny.hidden_size=768", "model.tiny.intermediate_size=3072",
              "model.tiny.num_hidden_layers=6", "model.tiny.num_attention_heads=12"]


def distilbert_cfg(*overrides: str, task: str = "sst2"):
    return validate_config(compose_cfg(["model=tiny_distilbert", f"task={task}", "task.data_dir=unused",
                                        "print_summary=false", *overrides]))


@pytest.mark.parametrize(("method", "overrides", "trainable", "total"), [
    # seed 003: LoRA r8 α16 on q_lin, v_lin (peft's DistilBERT default) + the classifier head = 739,586, 1.09 %
    ("lora", ["method.target_modules=[q_lin,v_lin]"], 739_586, 67_694_596),
    # seed 003: HiRA r32 ≈ 2.9 M on q, k, v, up, down (lin1, lin2) + the head
    ("hira", [], 2_951_426, 69_906_436),
])
def test_seed_parameter_counts_on_the_distilbert_base_shape(method, overrides, trainable, total):
    cfg = distilbert_cfg(f"method={method}", *BASE_SHAPE, *overrides)
    model = METHODS.get(method)(cfg).apply(empty_model(cfg))  # the real shape on the meta device: no memory
    counts = count_parameters(model)
    assert (counts["trainable_params"], counts["total_params"]) == (trainable, total)
    if method == "lora":  # peft's own report (the head is counted twice: frozen original + trained copy)
        assert round(100 * trainable / total, 2) == 1.09


def test_model_kind_follows_the_task():
    assert distilbert_cfg().model.kind == "sequence_classification"
    assert distilbert_cfg(task="wikitext2").model.kind == "masked_lm"
    assert validate_config(compose_cfg(["model=distilbert", "task=wikitext2"])).model.kind == "masked_lm"


def test_masked_lm_features_mask_a_seeded_sixth_of_the_tokens():
    cfg = distilbert_cfg(task="wikitext2")
    _, tokenizer = load_model_and_tokenizer(cfg)
    example = Example(prompt="", target="The quick brown fox jumps over the lazy dog. " * 4, language_modeling=True)
    first = featurizer_for("masked_lm")(tokenizer, example, False, 512)
    again = featurizer_for("masked_lm")(tokenizer, example, False, 512)
    assert first == again
    labelled = [i for i, label in enumerate(first.labels) if label != IGNORE_INDEX]
    assert len(labelled) == round(0.15 * len(first.labels))
    assert sum(first.input_ids[i] == tokenizer.mask_token_id for i in labelled) >= 0.6 * len(labelled)


def test_pseudo_perplexity_masks_each_token_in_its_window():
    cfg = distilbert_cfg(task="wikitext2")
    model, tokenizer = load_model_and_tokenizer(cfg)
    model.eval()
    ids = tokenizer("hello world, a masked test", add_special_tokens=False)["input_ids"]
    nll = masked_token_nll(model, ids, context=8, stride=4, batch_size=5, device=torch.device("cpu"),
                           mask_id=tokenizer.mask_token_id)
    assert not torch.isnan(nll).any()
    t = 3  # token 3 sits in the first window, [0, 8)
    masked = torch.tensor([ids[:8]])
    masked[0, t] = tokenizer.mask_token_id
    with torch.no_grad():
        expected = -torch.log_softmax(model(input_ids=masked).logits[0, t].double(), -1)[ids[t]]
    assert float(nll[t - 1]) == pytest.approx(float(expected), rel=1e-5)


def test_wikitext2_without_a_local_train_file_trains_on_validation(tmp_path):
    rows = ["= Title =", "", "Some validation text.", "More of it."]
    (tmp_path / "wikitext-2-raw-v1.validation.jsonl").write_text("".join(json.dumps({"text": r}) + "\n" for r in rows))
    cfg = distilbert_cfg(f"task.data_dir={tmp_path}", task="wikitext2")
    examples = TASKS.get("wikitext2")(cfg.task).train_examples()
    assert "Some validation text." in examples[0].target


def test_seed003_preset_takes_the_seed_settings_for_each_swept_choice():
    from lora_lab.config.compose import compose_config

    def composed(method: str, task: str):
        return validate_config(compose_config(["experiment=seed003_grid", f"method={method}", f"task={task}"]))

    lora, hira = composed("lora", "sst2"), composed("hira", "wikitext2")
    assert (lora.model.name, lora.model.kind, list(lora.method.target_modules)) == (
        "distilbert", "sequence_classification", ["q_lin", "v_lin"])
    assert (hira.model.kind, hira.method.r, list(hira.method.target_modules)) == (
        "masked_lm", 32, ["q_lin", "k_lin", "v_lin", "lin1", "lin2"])
