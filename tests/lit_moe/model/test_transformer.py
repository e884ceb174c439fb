"""Transformer options: dense first blocks, shared experts, tied embeddings, causality, parameter count."""

from __future__ import annotations

import torch

from lit_moe.model import MoELayer, MoETransformer, MoETransformerConfig
from lit_moe.model.layers import SwiGLU


def _config(**overrides) -> MoETransformerConfig:
    base = dict(vocab_size=50, d_model=32, n_layers=3, n_heads=2, num_experts=4, top_k=2, d_expert=16, max_seq_len=16)
    base.update(overrides)
    return MoETransformerConfig(**base)


def test_first_k_dense_and_parameter_count():
    config = _config(first_k_dense=2, num_shared_experts=1, tie_embeddings=True)
    model = MoETransformer(config)
    kinds = [type(block.mlp) for block in model.blocks]
    assert kinds == [SwiGLU, SwiGLU, MoELayer]
    assert model.blocks[0].mlp.gate.out_features == config.top_k * config.d_expert  # equal active parameters
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()["total"]
    assert model.lm_head.weight is model.embed.weight


def test_shared_experts_add_a_dense_path():
    torch.manual_seed(0)
    layer = MoELayer(_config(num_shared_experts=2))
    x_TD = torch.randn(7, 32)
    y_TD, _ = layer(x_TD)
    routed_only = MoELayer(_config())
    routed_only.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("shared_experts")})
    torch.testing.assert_close(y_TD, routed_only(x_TD)[0] + layer.shared_experts(x_TD))
    assert layer.shared_experts.gate.out_features == 2 * 16


def test_model_is_causal_and_returns_stats_per_moe_block():
    torch.manual_seed(0)
    model = MoETransformer(_config(first_k_dense=1)).eval()
    tokens = torch.randint(0, 50, (2, 12))
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 50
    out, out_changed = model(tokens), model(changed)
    torch.testing.assert_close(out.logits_BSV[:, :8], out_changed.logits_BSV[:, :8])
    assert not torch.allclose(out.logits_BSV[:, 8:], out_changed.logits_BSV[:, 8:])
    assert sorted(out.moe_stats) == [1, 2]
