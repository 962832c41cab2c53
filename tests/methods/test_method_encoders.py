"""Every method on tiny random encoders of each family used (BERT/MiniLM, DistilBERT) as classifiers.

The classification head is fresh: it must stay out of 4-bit, train in full and travel with the adapter, so a
reloaded (and a merged) adapter reproduces the trained classifier. Method target names are translated to the
family's module names, and a target that matches nothing fails at start with the model's linear names.
"""

from __future__ import annotations

import pytest
import torch

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import validate_config
from lora_lab.methods import METHODS
from lora_lab.methods.adapters import load_adapter, merge_adapter
from lora_lab.models import load_model_and_tokenizer
from lora_lab.models.structure import check_targets, empty_model
from lora_lab.training.loop import train
from lora_lab.training.tokenize import Features
from tests.helpers.lab_helpers import compose_cfg
from tests.helpers.method_helpers import ALL_METHODS, LEARNS, one_thread  # noqa: F401  (one_thread: autouse)

ENCODERS = {"tiny_bert": ["classifier"], "tiny_distilbert": ["pre_classifier", "classifier"]}
STEPS = 16  # sparse_lora reaches its target sparsity at step 15 (LEARNS)


def encoder_cfg(model: str, method: str, *overrides: str):
    return validate_config(compose_cfg([
        f"model={model}", f"method={method}", "task=sst2", "task.data_dir=unused", f"train.max_steps={STEPS}",
        "train.batch_size=4", "train.scheduler=constant", "train.warmup_ratio=0", "print_summary=false",
        *(["method.dropout=0"] if method != "galore" else []), *LEARNS[method], *overrides,
    ]))


def probe(n: int = 4) -> torch.Tensor:
    return torch.randint(5, 90, (n, 10), generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def class_logits(model) -> torch.Tensor:
    model.eval()
    return model(input_ids=probe()).logits.float()


def fresh_base(cfg, method):
    model, _ = load_model_and_tokenizer(cfg, method.model_load_kwargs())
    return method.prepare_loaded(model)


@pytest.mark.parametrize("model_name", sorted(ENCODERS))
@pytest.mark.parametrize("method_name", ALL_METHODS)
def test_encoder_classifier_trains_saves_and_merges_with_its_head(model_name, method_name, tmp_path):
    cfg = encoder_cfg(model_name, method_name)
    method = METHODS.get(method_name)(cfg)
    model, tokenizer = load_model_and_tokenizer(cfg, method.model_load_kwargs())
    model = method.apply(method.prepare_loaded(model))
    trainable = [f".{n}" for n, p in model.named_parameters() if p.requires_grad]
    for head in ENCODERS[model_name]:  # float, not 4-bit: a fresh head is trained, not frozen storage
        assert not any("4bit" in type(m).__name__ for n, m in model.named_modules() if f".{head}." in f".{n}.")
        assert any(f".{head}." in n for n in trainable), (head, trainable)
    ids = probe(16)
    features = [Features(row.tolist(), [], label=int(row.sum()) % 2) for row in ids]
    train(model, features, method, cfg, pad_id=tokenizer.pad_token_id, device=torch.device("cpu"))
    expected = class_logits(model)
    assert (expected - class_logits(fresh_base(cfg, method))).abs().max() > 1e-3
    method.save(model, tmp_path)

    loaded = load_adapter(fresh_base(cfg, method), tmp_path)
    torch.testing.assert_close(class_logits(loaded), expected, rtol=1e-5, atol=1e-5)
    merged = merge_adapter(loaded, tmp_path)
    torch.testing.assert_close(class_logits(merged), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("model_name", "method_name", "expected"), [
    ("tiny_bert", "lora", ["query", "key", "value", "attention.output.dense"]),
    ("tiny_distilbert", "lora", ["q_lin", "k_lin", "v_lin", "out_lin"]),
    ("tiny_distilbert", "hira", ["q_lin", "k_lin", "v_lin", "lin1", "lin2"]),
    ("tiny_bert", "galore", ["query", "key", "value", "attention.output.dense", "intermediate.dense"]),
    ("tiny", "lora", ["q_proj", "k_proj", "v_proj", "o_proj"]),
])
def test_method_targets_use_the_model_family_names(model_name, method_name, expected):
    cfg = encoder_cfg(model_name, method_name)
    assert list(cfg.method.target_modules) == expected
    check_targets(cfg, empty_model(cfg))  # every translated name exists in the family's layout


def test_a_family_name_passes_through():
    cfg = encoder_cfg("tiny_distilbert", "lora", "method.target_modules=[q_lin,v_lin]")
    assert list(cfg.method.target_modules) == ["q_lin", "v_lin"]


def test_targets_matching_nothing_fail_before_the_weights_load(monkeypatch, tmp_path):
    from lora_lab.jobs import finetune

    loaded = []
    monkeypatch.setattr(finetune, "load_model_and_tokenizer", lambda *a, **k: loaded.append(1))
    cfg = encoder_cfg("tiny_distilbert", "qlora", "method.target_modules=[query,value]")
    ctx = type("Ctx", (), {"cfg": cfg, "run_dir": tmp_path, "device": torch.device("cpu")})()
    monkeypatch.setattr(finetune, "build_task", lambda ctx: type("T", (), {
        "train_examples": lambda self: [], "eval_examples": lambda self: []})())
    with pytest.raises(ConfigError) as err:
        finetune.finetune(ctx)
    assert not loaded
    message = str(err.value)
    assert message.startswith("method.target_modules=") and "'query' matches no linear module" in message
    assert "attention.q_lin" in message and "ffn.lin1" in message and "\n" not in message
