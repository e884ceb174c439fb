"""Import of every family from a sharded transformers checkpoint: exact logits and routing."""

from __future__ import annotations

import pytest
import torch

from lit_moe.hf import load_hf
from tests.lit_moe.hf.helpers import (
    FAMILIES,
    VOCAB,
    hf_logits_and_topk,
    our_logits_and_topk,
    save_random_hf,
)

pytest.importorskip("transformers")


@pytest.mark.parametrize("family", FAMILIES)
def test_import_matches_transformers_logits_and_routing(family, tmp_path):
    hf_model = save_random_hf(family, tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) >= 2
    ours = load_hf(tmp_path).eval()
    tokens = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    hf_logits, hf_topk = hf_logits_and_topk(hf_model, tokens)
    our_logits, our_topk = our_logits_and_topk(ours, tokens)
    assert hf_logits.abs().max() > 1.0  # weights large enough that the comparison means something
    torch.testing.assert_close(our_logits, hf_logits, rtol=0, atol=1e-4)
    assert len(our_topk) == len(hf_topk) == len(ours.moe_layers())
    for layer, (a, b) in enumerate(zip(our_topk, hf_topk)):
        assert torch.equal(a, b), f"layer {layer}: top-k experts differ"


def test_family_features_are_mapped(tmp_path):
    save_random_hf("qwen2_moe", tmp_path / "q2")
    config = load_hf(tmp_path / "q2").config
    assert (config.qkv_bias, config.shared_expert_gate, config.d_shared, config.dense_layers) == (True, True, 40, [1])
    save_random_hf("qwen3", tmp_path / "q3")
    config = load_hf(tmp_path / "q3").config
    assert (config.qk_norm, config.head_dim, config.rope_scaling.type, config.n_kv_heads) == ("per_head", 32, "yarn", 2)


def test_qwen_dense_layers_follow_transformers_layer_choice():
    from transformers import AutoModelForCausalLM, Qwen2MoeConfig

    from lit_moe.hf.families import family_for

    hf = Qwen2MoeConfig(vocab_size=32, hidden_size=16, num_hidden_layers=6, num_attention_heads=2,
                        num_key_value_heads=2, intermediate_size=8, moe_intermediate_size=4,
                        shared_expert_intermediate_size=4, num_experts=4, num_experts_per_tok=2,
                        decoder_sparse_step=2, mlp_only_layers=[3])
    model = AutoModelForCausalLM.from_config(hf)
    theirs = [i for i, layer in enumerate(model.model.layers) if not hasattr(layer.mlp, "experts")]
    assert family_for("qwen2_moe").config_fields(hf)["dense_layers"] == theirs == [0, 2, 3, 4]
