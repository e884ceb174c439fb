"""KV-cache decoding: equals a full forward, greedy equals transformers' generate, top-p keeps the nucleus."""

from __future__ import annotations

import pytest
import torch

from lit_moe.generation import generate, sample_top_p
from lit_moe.hf import load_hf
from lit_moe.model import MoETransformer, MoETransformerConfig
from tests.lit_moe.hf.helpers import FAMILIES, VOCAB, save_random_hf


def test_cached_decoding_equals_full_forward():
    torch.manual_seed(0)
    config = MoETransformerConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, num_experts=4,
                                  top_k=2, d_expert=16, max_seq_len=32, qk_norm="per_head", init_std=0.1)
    model = MoETransformer(config).eval()
    tokens = torch.randint(0, 50, (1, 20))
    caches = model.new_kv_caches(1, 20)
    with torch.no_grad():
        full = model(tokens).logits_BSV
        pieces = [model(tokens[:, :7], kv_caches=caches).logits_BSV,
                  model(tokens[:, 7:12], kv_caches=caches).logits_BSV]
        pieces += [model(tokens[:, i:i + 1], kv_caches=caches).logits_BSV for i in range(12, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_equals_transformers_generate(family, tmp_path):
    pytest.importorskip("transformers")
    hf_model = save_random_hf(family, tmp_path)
    ours = load_hf(tmp_path)
    prompt = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = hf_model.generate(prompt, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                                     pad_token_id=0)[0, 9:].tolist()
    assert generate(ours, prompt[0].tolist(), max_new_tokens=12) == expected


def test_top_p_samples_only_the_nucleus():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    generator = torch.Generator().manual_seed(0)
    draws = [sample_top_p(logits, top_p=0.7, temperature=1.0, generator=generator) for _ in range(400)]
    counts = torch.bincount(torch.tensor(draws), minlength=4)
    assert counts[2] == counts[3] == 0  # 0.5 + 0.3 reaches 0.7: tokens 2 and 3 are outside
    assert 0.55 < counts[0] / 400 < 0.70  # renormalised: 0.5 / 0.8 = 0.625
    assert sample_top_p(logits, top_p=1e-6, temperature=1.0, generator=generator) == 0
    assert sample_top_p(logits, top_p=0.9, temperature=0.0) == 0
