"""`lora-lab-merge`'s folder is ready to serve: plain transformers (AutoModelForCausalLM + AutoTokenizer, no peft,
no lora-lab) loads it, applies the chat template from tokenizer_config.json and stops where lora-lab's
evaluation stops (generation_config.json); a sharded folder holds exactly the unsharded one's weights.

The slow test does the same with SmolLM2-135M's real chat template.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from lora_lab.commands import merge, saved_run
from lora_lab.evaluation.generation import eos_ids, generate_batched
from lora_lab.tasks.base import Example
from lora_lab.training.tokenize import prompt_ids, render_prompt
from tests.helpers.method_helpers import build, fit, logits, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)

# a ChatML-style template like SmolLM2's, for the tiny model (whose tokenizer ships none)
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
            "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "12 + 7 ="}]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    cfg = method_cfg("lora", "train.max_steps=6", "method.lr=1e-2")
    built = build(cfg)
    fit(built)
    run = tmp_path_factory.mktemp("run")
    (run / ".hydra").mkdir()
    (run / "adapter").mkdir()
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    built.method.save(built.model, run / "adapter")
    return run / "adapter"


@pytest.fixture
def with_chat_template(monkeypatch):
    """The adapter's base tokenizer as a chat model's: with a template."""
    load = saved_run.load_with_adapter

    def templated(folder, overrides=()):
        cfg, model, tokenizer = load(folder, overrides)
        tokenizer.chat_template = TEMPLATE
        return cfg, model, tokenizer

    monkeypatch.setattr(saved_run, "load_with_adapter", templated)


def test_plain_transformers_serves_the_folder_with_its_chat_template(adapter, tmp_path, with_chat_template):
    out = merge.merge_to_folder(adapter, tmp_path / "merged")
    tokenizer_config = json.loads((out / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == TEMPLATE
    assert not (out / "chat_template.jinja").exists()  # one copy, where every loader looks

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    text = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text == render_prompt(tokenizer, Example(prompt="12 + 7 =", target="", system="Be brief."), True)

    generation = GenerationConfig.from_pretrained(str(out))
    assert generation.eos_token_id == tokenizer.eos_token_id and generation.pad_token_id == tokenizer.pad_token_id
    assert generation.bos_token_id == tokenizer.bos_token_id
    assert eos_ids(model, tokenizer) == [tokenizer.eos_token_id]

    # a server's call: only the ids and a length; stopping and padding come from generation_config.json
    ids = torch.tensor([prompt_ids(tokenizer, text)])
    with torch.no_grad():
        served = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                                do_sample=False)
    served_text = tokenizer.decode(served[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert served_text == generate_batched(model, tokenizer, [ids[0].tolist()], max_new_tokens=16, batch_size=1)[0]


def test_generation_config_keeps_a_hub_models_eos_list_and_sampling_defaults(adapter):
    _, model, tokenizer = saved_run.load_with_adapter(adapter)
    model.generation_config = GenerationConfig(eos_token_id=[5, tokenizer.eos_token_id], temperature=0.3)
    config = merge.serving_generation_config(model, tokenizer)
    assert config.eos_token_id == [tokenizer.eos_token_id, 5]  # the evaluation's order: the tokenizer's first
    assert config.temperature == 0.3 and config.pad_token_id == tokenizer.pad_token_id


def test_a_sharded_folder_holds_the_unsharded_ones_weights(adapter, tmp_path):
    whole = merge.merge_to_folder(adapter, tmp_path / "whole")
    sharded = merge.merge_to_folder(adapter, tmp_path / "sharded", max_shard_size="100KB")
    assert [p.name for p in whole.glob("*.safetensors")] == ["model.safetensors"]
    assert not (whole / "model.safetensors.index.json").exists()
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 1 and sorted(set(index["weight_map"].values())) == shards
    assert max((sharded / s).stat().st_size for s in shards) < 2 * 100_000  # one tensor may overshoot, not more

    a = AutoModelForCausalLM.from_pretrained(str(whole)).eval()
    b = AutoModelForCausalLM.from_pretrained(str(sharded)).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(logits(a), logits(b))
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (whole / name).read_text() == (sharded / name).read_text().replace(str(sharded), str(whole)), name


@pytest.mark.slow
def test_smollm2s_merged_folder_serves_with_its_own_chat_template(tmp_path):
    """SmolLM2-135M-Instruct (offline: the packaged GGUF) saved as the merge saves it, loaded by plain
    transformers: the same chat text, the same stop ids and the same greedy answer as lora-lab's."""
    from lora_lab.commands import generate
    from lora_lab.models import load_model_and_tokenizer
    from tests.helpers.lab_helpers import validated_cfg

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = validated_cfg("model=smollm2_135m", tiny=False)
    model, tokenizer = load_model_and_tokenizer(cfg)
    model.eval()
    merge.save_merged(model, tokenizer, tmp_path, max_shard_size="100MB")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1

    served_tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    served = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert served_tokenizer.chat_template == tokenizer.chat_template
    prompt = "Solve the problem. Reply with only the final number.\n\nThere are 3 bags and each bag holds 4 cards."
    text = served_tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                                tokenize=False)
    assert text == render_prompt(tokenizer, Example(prompt=prompt, target=""), True)
    assert GenerationConfig.from_pretrained(str(tmp_path)).eos_token_id in (eos_ids(model, tokenizer),
                                                                           eos_ids(model, tokenizer)[0])
    ids = torch.tensor([served_tokenizer(text)["input_ids"]])
    with torch.no_grad():
        out = served.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                              do_sample=False)
    served_text = served_tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert served_text == generate.complete(model, tokenizer, prompt, use_chat_template=True, max_new_tokens=24)
