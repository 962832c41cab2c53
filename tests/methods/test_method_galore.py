"""GaLore: every parameter trains, target weights are projected, and the optimizer state is smaller than AdamW's."""

from __future__ import annotations

import torch

from lora_lab.jobs.steps import count_parameters
from lora_lab.methods.galore import optimizer_state_bytes
from tests.helpers.method_helpers import build, method_cfg, one_thread, probe_ids  # noqa: F401  (one_thread: autouse)


def one_step(model, optimizer) -> None:
    ids = probe_ids()
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_optimizer_state_is_smaller_than_adamw():
    built = build(method_cfg("galore", "method.rank=4"))
    params = count_parameters(built.model)
    assert params["trainable_params"] == params["total_params"]

    galore = built.method.build_optimizer(built.model)
    projected = galore.param_groups[1]["params"]
    assert len(projected) == 2 * 7 and all(p.ndim == 2 for p in projected)
    one_step(built.model, galore)
    for p in projected:  # Adam's moments live in the rank-4 subspace
        assert 4 in galore.state[p]["exp_avg"].shape

    adamw = torch.optim.AdamW([p for p in built.model.parameters() if p.requires_grad], lr=1e-3)
    one_step(built.model, adamw)
    galore_bytes, adamw_bytes = optimizer_state_bytes(galore), optimizer_state_bytes(adamw)
    assert 0 < galore_bytes < 0.75 * adamw_bytes, (galore_bytes, adamw_bytes)


def test_freeze_embeddings_keeps_them_out_of_training():
    built = build(method_cfg("galore", "method.freeze_embeddings=true"))
    assert not built.model.get_input_embeddings().weight.requires_grad
    assert built.model.lm_head.weight.requires_grad  # untied head still trains
    assert "model.embed_tokens.weight" not in built.method.initial
