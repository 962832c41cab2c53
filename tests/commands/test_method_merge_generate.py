"""`lora-lab-merge` and `lora-lab-generate` on an adapter of every method, saved in a run dir as a job saves it."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from lora_lab.commands import generate, merge
from lora_lab.commands.saved_run import load_with_adapter
from lora_lab.config.errors import ConfigError
from lora_lab.methods import adapters
from lora_lab.methods.merge_check import MergeMismatch
from tests.helpers.method_helpers import ALL_METHODS, build, fit, logits, method_cfg, one_thread  # noqa: F401  (one_thread: autouse)

# a few steps that move every method's trainable weights away from their (often zero) start (default: LoRA's)
QUICK = defaultdict(lambda: ["method.lr=1e-2"], {
    "lora": ["method.lr=1e-2"], "qlora": ["method.lr=1e-2"], "hira": ["method.lr=1e-2"],
    "galore": ["method.lr=3e-3", "method.rank=8", "method.update_proj_gap=2"],
    "sparse_lora": ["method.lr=1e-2", "method.start_step=1", "method.end_step=3"],
    "rosa": ["method.lr=1e-2", "method.mask_warmup_steps=2", "method.density=0.05"],
})


@pytest.fixture(scope="module", params=ALL_METHODS)
def saved_adapter(request, tmp_path_factory):
    name = request.param
    cfg = method_cfg(name, "train.max_steps=6", *QUICK[name])
    built = build(cfg)
    fit(built)
    run = tmp_path_factory.mktemp(f"run-{name}")
    (run / ".hydra").mkdir()
    (run / "adapter").mkdir()  # as the recipe's atomic save hands it to the method
    OmegaConf.save(cfg, run / ".hydra" / "config.yaml")
    built.method.save(built.model, run / "adapter")
    return name, run / "adapter"


def test_merged_folder_loads_alone_and_matches_the_adapter(saved_adapter, tmp_path):
    name, adapter = saved_adapter
    _, unmerged, _ = load_with_adapter(adapter)
    out = merge.merge_to_folder(adapter, tmp_path / "merged")
    assert list(out.glob("*.safetensors")) and (out / "config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(str(out))  # plain transformers: no peft, no lora-lab
    assert not any("4bit" in type(m).__name__ or "lora" in type(m).__name__.lower() for m in merged.modules())
    diff = (logits(merged) - logits(unmerged)).abs().max().item()
    print(f"{name}: merged vs unmerged logits max |diff| = {diff:.2e}")
    assert diff < 1e-4


def test_generate_from_the_adapter_and_from_the_merged_folder_agree(saved_adapter, tmp_path):
    _, adapter = saved_adapter
    out = merge.merge_to_folder(adapter, tmp_path / "merged")
    texts = []
    for folder in (adapter, out):
        model, tokenizer, chat = generate.load(folder, [])
        texts.append(generate.complete(model, tokenizer, "12 + 7 =", use_chat_template=chat, max_new_tokens=8))
    assert texts[0] == texts[1] and len(texts[0]) > 0


def test_merge_refuses_an_existing_output_and_a_folder_without_adapter(saved_adapter, tmp_path):
    _, adapter = saved_adapter
    with pytest.raises(ConfigError, match="already exists"):
        merge.merge_to_folder(adapter, tmp_path)
    with pytest.raises(ConfigError, match="no adapter_config.json"):
        merge.merge_to_folder(tmp_path, tmp_path / "out")


def test_the_same_merge_again_finds_it_done_and_another_is_refused(saved_adapter, tmp_path, capsys):
    """A merge stopped after its folder was complete (killed after the last rename) is not redone or refused
    when the same command runs again: the folder records what it was made from."""
    _, adapter = saved_adapter
    out = merge.merge_to_folder(adapter, tmp_path / "merged")
    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert merge.merge_to_folder(adapter, tmp_path / "merged") == out
    assert "already holds this merge" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == written  # untouched
    with pytest.raises(ConfigError, match="already exists"):  # another request into the same folder
        merge.merge_to_folder(adapter, tmp_path / "merged", overrides=["seed=1"])


def test_sampling_flags_are_checked():
    with pytest.raises(ConfigError, match="top_p"):
        generate.complete(None, None, "x", use_chat_template=False, temperature=-1)


def _first_weight(model) -> torch.Tensor:
    return next(p for n, p in model.named_parameters() if n.endswith("proj.weight") and p.dim() == 2)


# Ways a merge can go wrong with no error from the library that did it, each applied after the format's merge
CORRUPTIONS = {
    "perturbed": lambda model: _first_weight(model).data.add_(0.05 * torch.randn_like(_first_weight(model))),
    "nan": lambda model: _first_weight(model).data.view(-1)[:3].fill_(float("nan")),
    "adapter_dropped": None,  # the base comes back without what was trained: handled below
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_a_wrong_merge_is_refused_and_nothing_is_written(saved_adapter, tmp_path, monkeypatch, capsys, corruption):
    name, adapter = saved_adapter
    if corruption == "adapter_dropped" and name == "galore":
        pytest.skip("a GaLore adapter is full-weight deltas added on load: there is no separate adapter to drop")
    real_get = adapters.ADAPTER_FORMATS.get

    def faulty(fmt_name):
        fmt = real_get(fmt_name)

        def merge(model, folder):
            if corruption == "adapter_dropped":  # what peft 0.22's unload did to a trained classifier head
                base = model.unload()
                return base.dequantize() if getattr(base, "is_loaded_in_4bit", False) else base
            merged = fmt.merge(model, folder)
            CORRUPTIONS[corruption](merged)
            return merged

        return dataclasses.replace(fmt, merge=merge)

    monkeypatch.setattr(adapters.ADAPTER_FORMATS, "get", faulty)
    out = tmp_path / "merged"
    with pytest.raises(MergeMismatch, match="differ from the adapter's"):
        merge.merge_to_folder(adapter, out)
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        merge.main([str(adapter), str(out)])
    assert exit_info.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lora-lab-merge: merge error: merge of ")


def test_a_faithful_merge_passes_the_check_untouched(saved_adapter, monkeypatch, tmp_path):
    """The probe check itself does not change what is written: the merged weights equal an unchecked merge's."""
    _, adapter = saved_adapter
    _, unmerged, _ = load_with_adapter(adapter)
    unchecked = adapters.merge_adapter(unmerged, adapter, check=False).state_dict()
    out = merge.merge_to_folder(adapter, tmp_path / "merged")
    checked = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    for key, value in checked.items():
        torch.testing.assert_close(value, unchecked[key], rtol=0, atol=0)
