"""Numerical parity with Hugging Face transformers' MixtralSparseMoeBlock (weights copied)."""

from __future__ import annotations

import pytest
import torch

from tests.lit_moe.helpers import make_layer

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("backend", ["loop", "grouped_mm"])
def test_topk_layer_matches_mixtral_block(backend):
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    num_experts, top_k, d_model, d_expert = 6, 2, 16, 24
    layer = make_layer("topk", num_experts=num_experts, top_k=top_k, d_model=d_model, d_expert=d_expert,
                       normalize_topk=True, backend=backend)
    config = MixtralConfig(hidden_size=d_model, intermediate_size=d_expert, num_local_experts=num_experts,
                           num_experts_per_tok=top_k, router_jitter_noise=0.0)
    block = MixtralSparseMoeBlock(config).eval()
    with torch.no_grad():
        block.gate.weight.copy_(layer.router.weight_ED)
        gate_FD = layer.experts.w_gate_EDF.transpose(1, 2)
        up_FD = layer.experts.w_up_EDF.transpose(1, 2)
        block.experts.gate_up_proj.copy_(torch.cat([gate_FD, up_FD], dim=1))
        block.experts.down_proj.copy_(layer.experts.w_down_EFD.transpose(1, 2))
    x_BSD = torch.randn(2, 11, d_model)
    ours, _ = layer(x_BSD)
    theirs = block(x_BSD)
    theirs = theirs[0] if isinstance(theirs, tuple) else theirs
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
