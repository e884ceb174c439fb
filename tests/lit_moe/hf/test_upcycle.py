"""Upcycling a dense Llama / Qwen3 folder: step-0 logits equal the dense model's; split and noise."""

from __future__ import annotations

import pytest
import torch

from lit_moe.hf.upcycle import UpcycleSpec, upcycle_hf
from tests.lit_moe.hf.helpers import VOCAB, save_random_hf

pytest.importorskip("transformers")


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_upcycled_logits_equal_the_dense_model_at_step_zero(family, tmp_path):
    dense = save_random_hf(family, tmp_path)
    model = upcycle_hf(tmp_path, UpcycleSpec(num_experts=4, top_k=2, router_init_std=0.5)).eval()
    assert len(model.moe_layers()) == model.config.n_layers and model.config.num_experts == 4
    tokens = torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(4))
    chosen = []
    hook = model.blocks[0].mlp.router.register_forward_hook(lambda _m, _i, out: chosen.append(out.expert_idx_TK))
    with torch.no_grad():
        ours, theirs = model(tokens).logits_BSV, dense(tokens).logits
    hook.remove()
    assert chosen[0].unique().numel() > 2  # the router really spreads tokens over different copies
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_fine_grained_split_and_noise(tmp_path):
    dense = save_random_hf("llama", tmp_path)
    spec = UpcycleSpec(num_experts=2, top_k=4, granularity=4, noise_std=0.1, seed=3)
    model = upcycle_hf(tmp_path, spec)
    experts = model.blocks[1].mlp.experts
    assert experts.w_gate_EDF.shape == (8, 64, 20)
    gate_FD = dense.model.layers[1].mlp.gate_proj.weight.detach()
    piece = gate_FD[20:40].t()  # expert 1 = piece 1 of copy 0; expert 5 = piece 1 of copy 1
    for expert in (1, 5):
        delta = experts.w_gate_EDF[expert] - piece
        assert 0.05 < (delta.std() / gate_FD.std()).item() < 0.15  # noise of the requested relative size
    assert not torch.equal(experts.w_gate_EDF[1], experts.w_gate_EDF[5])  # copies perturbed independently
    down_DF = dense.model.layers[1].mlp.down_proj.weight.detach()
    exact = upcycle_hf(tmp_path, UpcycleSpec(num_experts=2, top_k=4, granularity=4)).blocks[1].mlp.experts
    assert torch.equal(exact.w_down_EFD[6], down_DF[:, 40:60].t())
    assert torch.equal(exact.w_up_EDF[3], dense.model.layers[1].mlp.up_proj.weight.detach()[60:80].t())
