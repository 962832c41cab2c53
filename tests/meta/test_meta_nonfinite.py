"""Non-finite weights read from outside are refused where they are read, naming the file and the tensor: a bank
member's NaN never reaches a generated adapter (every reader of member tensors goes through AdapterReader)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_lab.config.errors import DataError
from lora_lab.meta.cache import ArrayCache
from lora_lab.meta.combine import predict_adapter
from lora_lab.meta.gram import bank_gram_matrix
from lora_lab.meta.lora_tensors import write_adapter
from lora_lab.meta.mixture import BankMixture
from tests.helpers.meta_adapters import adapter_config, random_factors, write_member


def poison(member, value: float = float("nan")) -> str:
    tensors = random_factors(seed=1)
    key = sorted(tensors)[0]
    tensors[key][0, :] = value
    write_member(member, tensors, adapter_config())
    return key


READERS = {
    "combine (delta)": lambda dirs, out: predict_adapter(dirs, np.array([0.5, 0.5]), out, mode="delta"),
    "combine (factors)": lambda dirs, out: predict_adapter(dirs, np.array([0.5, 0.5]), out, mode="factors"),
    "gram matrix": lambda dirs, out: bank_gram_matrix(dirs),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_member_with_non_finite_weights_is_refused_naming_file_and_tensor(make_bank, tmp_path, reader, value):
    root, _ = make_bank(2)
    key = poison(root / "adapters" / "task001", value)
    dirs = [root / "adapters" / "task000", root / "adapters" / "task001"]
    with pytest.raises(DataError, match=rf"task001/adapter_model.safetensors: tensor '{key}': \d+ (of \d+ )?values"):
        READERS[reader](dirs, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_mixture_refuses_a_member_with_non_finite_weights(make_bank):
    root, _ = make_bank(2)
    poison(root / "adapters" / "task000")
    model = torch.nn.Module()  # the module tree the helper adapters target: model.layers.N.self_attn.{q,v}_proj
    model.model = torch.nn.Module()
    model.model.layers = torch.nn.ModuleList()
    for _ in range(2):
        layer = torch.nn.Module()
        layer.self_attn = torch.nn.Module()
        layer.self_attn.q_proj, layer.self_attn.v_proj = torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)
        model.model.layers.append(layer)
    with pytest.raises(DataError, match="task000/adapter_model.safetensors: tensor"):
        BankMixture(model, [root / "adapters" / "task000", root / "adapters" / "task001"])


def test_a_generated_adapter_is_never_written_with_non_finite_values(tmp_path):
    tensors = random_factors(seed=0)
    key = sorted(tensors)[-1]
    tensors[key][0, 0] = float("nan")
    with pytest.raises(DataError, match=f"generated tensor '{key}'"):
        write_adapter(tmp_path / "out", tensors, adapter_config())
    assert not (tmp_path / "out").exists()


def test_a_cached_array_that_is_truncated_or_non_finite_is_recomputed(tmp_path):
    cache = ArrayCache(tmp_path)
    parts = {"kind": "histogram", "x": 1}
    cache.save(parts, np.ones(4))
    path = cache.path(parts)
    path.write_bytes(path.read_bytes()[:20])  # truncated
    assert np.array_equal(cache.get_or_compute(parts, lambda: np.full(4, 2.0)), np.full(4, 2.0))
    np.save(path, np.array([1.0, np.inf]))
    assert cache.load(parts) is None
