"""Bad method settings fail before any model is loaded, with one ConfigError naming the key."""

from __future__ import annotations

import pytest

from lora_lab.config.errors import ConfigError
from lora_lab.config.validate import validate_config
from tests.helpers.method_helpers import ALL_METHODS, tiny_cfg

BAD = [
    (["method=lora", "method.r=0"], "method.r"),
    (["method=lora", "method.init_lora_weights=orthogonal", "method.r=7"], "method.r"),
    (["method=qlora", "method.r=-4"], "method.r"),
    (["method=qlora", "method.init_lora_weights=pissa"], "method.init_lora_weights"),
    (["method=qlora", "method.quant_type=int4"], "method.quant_type"),
    (["method=hira", "method.r=0"], "method.r"),
    (["method=hira", "method.dropout=1.0"], "method.dropout"),
    (["method=galore", "method.rank=0"], "method.rank"),
    (["method=galore", "method.scale=0"], "method.scale"),
    (["method=galore", "method.optimizer=adamw8bit", "hardware.device=cpu"], "method.optimizer"),
    (["method=galore", "method.proj_type=diagonal"], "method.proj_type"),
    (["method=rosa", "method.r=0"], "method.r"),
    (["method=rosa", "method.density=0"], "method.density"),
    (["method=rosa", "method.density=1.5"], "method.density"),
    (["method=rosa", "method.mask_warmup_steps=0"], "method.mask_warmup_steps"),
    (["method=rosa", "method.init_lora_weights=pissa"], "method.init_lora_weights"),
    (["method=rosa", "method.sparse_backend=cusparse"], "method.sparse_backend"),
    (["method=rosa", "method.use_dora=true"], "method.use_dora"),
    (["method=sparse_lora", "method.target_sparsity=1.0"], "method.target_sparsity"),
    (["method=sparse_lora", "method.target_sparsity=-0.1"], "method.target_sparsity"),
    (["method=sparse_lora", "method.schedule=linear"], "method.schedule"),
    (["method=sparse_lora", "train.max_steps=10", "method.end_step=10"], "method.end_step"),
    (["method=sparse_lora", "train.max_steps=10", "method.start_step=6", "method.end_step=4"], "method.end_step"),
]


@pytest.mark.parametrize(("overrides", "key"), BAD, ids=[" ".join(o[1:]) or o[0] for o, _ in BAD])
def test_bad_settings_fail_with_one_config_error(overrides, key):
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_cfg(*overrides))
    assert err.value.key == key, str(err.value)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_defaults_are_valid(method):
    validate_config(tiny_cfg(f"method={method}"))
