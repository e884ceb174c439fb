"""Export to the Hub layout: transformers reloads it with the same logits; import∘export is the identity."""

from __future__ import annotations

import json

import pytest
import torch

from lit_moe.hf import load_hf, save_hf
from lit_moe.model import MoETransformer, MoETransformerConfig
from tests.lit_moe.hf.helpers import FAMILIES, VOCAB, save_random_hf

transformers = pytest.importorskip("transformers")


def _hf_logits(folder, tokens):
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(tokens).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_export_reloads_in_transformers_and_round_trips(family, tmp_path):
    hf_model = save_random_hf(family, tmp_path / "src")
    ours = load_hf(tmp_path / "src")
    save_hf(ours, tmp_path / "out", max_shard_size="60KB")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["model_type"] == family
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(json.loads((tmp_path / "src" / "model.safetensors.index.json").read_text())
                                           ["weight_map"])  # the family's on-disk (per-expert) key names
    tokens = torch.randint(0, VOCAB, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf_model(tokens).logits
    torch.testing.assert_close(_hf_logits(tmp_path / "out", tokens), expected, rtol=0, atol=1e-4)
    again = load_hf(tmp_path / "out")
    before, after = ours.state_dict(), again.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


@pytest.mark.parametrize("overrides,family", [({}, "qwen2_moe"), ({"num_shared_experts": 0}, "qwen2_moe"),
                                               ({"qk_norm": "per_head", "num_shared_experts": 0}, "qwen3_moe"),
                                               ({"qk_norm": "full", "num_shared_experts": 0}, "olmoe"),
                                               ({"normalize_topk": True, "num_shared_experts": 0}, "mixtral")])
def test_from_scratch_model_exports_as_closest_family_with_default_state(overrides, family, tmp_path):
    torch.manual_seed(0)
    base = dict(vocab_size=VOCAB, d_model=64, n_layers=2, n_heads=4, num_experts=4, top_k=2, d_expert=32,
                num_shared_experts=1, max_seq_len=64, router="default", init_std=0.1)
    config = MoETransformerConfig(**{**base, **overrides})
    model = MoETransformer(config).eval()
    for layer in model.moe_layers().values():
        layer.default_vectors_ED.normal_()
    save_hf(model, tmp_path, max_shard_size="40KB")
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == family
    tokens = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
    topk_model = MoETransformer(MoETransformerConfig(**{**base, **overrides, "router": "topk"})).eval()
    topk_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        ours = topk_model(tokens).logits_BSV  # transformers has no Default-MoE term
    torch.testing.assert_close(_hf_logits(tmp_path, tokens), ours, rtol=0, atol=1e-4)
    restored = load_hf(tmp_path, router="default")
    for index, layer in model.moe_layers().items():
        assert torch.equal(restored.moe_layers()[index].default_vectors_ED, layer.default_vectors_ED)


def test_export_refuses_a_family_that_cannot_represent_the_model(tmp_path):
    model = MoETransformer(MoETransformerConfig(vocab_size=VOCAB, d_model=32, n_layers=1, n_heads=2, d_expert=16))
    with pytest.raises(Exception, match="cannot export this model as mixtral: it .*normalize_topk"):
        save_hf(model, tmp_path, family="mixtral")
