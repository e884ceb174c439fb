"""Transformer options: dense first blocks, shared experts, tied embeddings, causality, parameter count."""

from __future__ import annotations

import pytest
import torch

from lit_moe.errors import UserInputError
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


def test_parameter_count_with_gqa_head_width_norms_biases_and_gated_shared_expert():
    config = _config(n_heads=4, n_kv_heads=2, d_head=12, qk_norm="full", qkv_bias=True, out_bias=True,
                     num_shared_experts=1, d_shared=24, shared_expert_gate=True, dense_layers=[1], d_dense=40)
    model = MoETransformer(config)
    assert sum(p.numel() for p in model.parameters()) == config.num_parameters()["total"]
    assert [type(b.mlp) for b in model.blocks] == [MoELayer, SwiGLU, MoELayer]
    assert model.blocks[0].attn.qkv.bias.abs().sum() == 0  # biases start at zero, gains at one
    assert model.blocks[0].attn.q_norm.weight.shape == (48,)


@pytest.mark.parametrize("scaling", [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 32, "beta_fast": 16, "beta_slow": 2,
     "mscale": 1.0, "mscale_all_dim": 0.5},
])
def test_rope_scalings_match_transformers_init_functions(scaling):
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from lit_moe.hf.families.base import rope_fields
    from lit_moe.model.layers import rope_inv_freq

    hf = transformers.LlamaConfig(hidden_size=128, num_attention_heads=4, head_dim=32, max_position_embeddings=512,
                                  rope_parameters={"rope_theta": 50000.0, **scaling})
    expected, expected_factor = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](hf, "cpu")
    fields = rope_fields(hf)
    ours, factor = rope_inv_freq(32, fields["rope_theta"], fields["rope_scaling"])
    torch.testing.assert_close(ours, expected.float(), rtol=1e-6, atol=0)
    assert factor == pytest.approx(expected_factor)


def test_invalid_new_fields_are_reported_in_one_line():
    with pytest.raises(UserInputError, match="n_heads=4 must be a multiple of n_kv_heads=3.*qk_norm='both'"):
        _config(n_heads=4, n_kv_heads=3, qk_norm="both")
    with pytest.raises(UserInputError, match=r"dense_layers \[7\] must lie in \[0, n_layers=3\)"):
        _config(dense_layers=[7])
