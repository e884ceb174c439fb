"""MoE Lens math: early decoding at m = K is the model itself, restricted outputs against a float64
reference, planted and uniform routing shares, top-m perplexity of a trained model vs top_k = 1."""

from __future__ import annotations

import math

import pytest
import torch

from lit_moe.analysis.domains import DomainDataModule
from lit_moe.analysis.lens import coverage_count, lens_forward, restrict_to_top_m, routed_terms, sequence_nll
from lit_moe.analysis.lens_report import LensAccumulator
from lit_moe.analysis.loading import load_language_model
from tests.lit_moe.analysis.helpers import random_model, save_checkpoint, tiny_config, train_tiny_lm

ROUTERS = ["topk", "default", "dense", "expert_group"]


def _tokens(batch=3, seq=20, seed=1):
    return torch.randint(0, 257, (batch, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("router", ROUTERS)
def test_early_decoding_at_m_equals_k_is_the_model_bit_for_bit(router):
    model = random_model(tiny_config(router=router, top_k=3, num_experts=5, num_shared_experts=1,
                                     n_layers=3, first_k_dense=1), scale=3.0)
    tokens_BS = _tokens()
    block_out = {}
    handles = [block.register_forward_hook(lambda mod, args, out, i=i: block_out.__setitem__(i, out[0]))
               for i, block in enumerate(model.blocks)]
    with torch.no_grad():
        reference_BSV = model(tokens_BS).logits_BSV
        for handle in handles:
            handle.remove()
        lens = lens_forward(model, tokens_BS, keep_hidden=True)
        assert sorted(lens.layers) == [1, 2]
        assert torch.equal(lens.logits_BSV, reference_BSV)
        for index, record in lens.layers.items():
            for variant in (0, 1):  # both gate variants coincide with the model at m = K
                assert torch.equal(record.hidden_RMTD[variant, -1], block_out[index].reshape(-1, 32))
                torch.testing.assert_close(record.cos_RMT[variant, -1], torch.ones(60), atol=1e-6, rtol=0)
            assert (record.cos_RMT[:, 0] < 1 - 1e-4).any()  # dropping experts does change the state
        last = lens.layers[2]
        decoded_TV = model.lm_head(model.final_norm(last.hidden_RMTD[0, -1]))
        assert torch.equal(decoded_TV, reference_BSV.reshape(-1, 257))
        assert torch.equal(last.top1_RMT[0, -1], reference_BSV.argmax(-1).reshape(-1))
        for renormalise in (False, True):
            with restrict_to_top_m(model, 3, renormalise):
                assert torch.equal(model(tokens_BS).logits_BSV, reference_BSV)
            with restrict_to_top_m(model, 1, renormalise):
                assert not torch.allclose(model(tokens_BS).logits_BSV, reference_BSV)


@pytest.mark.parametrize("router", ROUTERS)
def test_restricted_layer_output_matches_a_float64_reference(router):
    model = random_model(tiny_config(router=router, top_k=3, num_experts=5, num_shared_experts=1, n_layers=1),
                         scale=3.0).double()
    layer = model.moe_layers()[0]
    x_TD = torch.randn(40, 32, dtype=torch.float64)
    with torch.no_grad():
        y_TD, _ = layer(x_TD)
        probs_TE = torch.softmax(x_TD @ layer.router.weight_ED.t(), -1)
        top_TK = probs_TE.topk(3, dim=-1)
        routed_TD = sum(top_TK.values[:, j : j + 1] * torch.stack([
            layer.experts.forward_expert(int(e), x_TD[t : t + 1])[0] for t, e in enumerate(top_TK.indices[:, j])])
            for j in range(3))
        extra_TD = y_TD - routed_TD  # shared expert + the router's missing-expert term
        if router == "topk":
            torch.testing.assert_close(extra_TD, layer.shared_experts(x_TD))
        terms = routed_terms(layer, x_TD)
        for m in (1, 2):
            kept_TD = sum(top_TK.values[:, j : j + 1] * torch.stack([
                layer.experts.forward_expert(int(e), x_TD[t : t + 1])[0] for t, e in enumerate(top_TK.indices[:, j])])
                for j in range(m))
            scale_T1 = top_TK.values.sum(-1, keepdim=True) / top_TK.values[:, :m].sum(-1, keepdim=True)
            for renormalise, expected_TD in ((False, extra_TD + kept_TD), (True, extra_TD + scale_T1 * kept_TD)):
                got_TD = y_TD + terms.correction(m, renormalise).double()
                torch.testing.assert_close(got_TD, expected_TD, atol=1e-5, rtol=1e-5)


def _planted_model(num_experts: int, top_k: int, expert_of_token: torch.Tensor):
    """Residual = embedding (attention and experts output zero); token t routes first to
    ``expert_of_token[t]`` = e and second to e + 1 (mod N) in every layer (router row e is a scaled
    copy of direction e)."""
    model = random_model(tiny_config(num_experts=num_experts, top_k=top_k, n_layers=2, d_model=32), scale=1.0)
    with torch.no_grad():
        directions_ED = torch.eye(32)[:num_experts]
        second_of_token = (expert_of_token + 1) % num_experts
        model.embed.weight.copy_(torch.randn(257, 32) * 0.01 + directions_ED[expert_of_token] * 5.0
                                 + directions_ED[second_of_token] * 2.5)
        for block in model.blocks:
            block.attn.out.weight.zero_()
            block.mlp.experts.w_down_EFD.zero_()
            block.mlp.router.weight_ED.copy_(directions_ED * 10.0)
    return model


def _lens_report(model, domains: dict[str, torch.Tensor]) -> dict:
    layers = model.moe_layers()
    first = next(iter(layers.values()))
    accumulator = LensAccumulator(sorted(layers), first.num_experts, first.top_k)
    with torch.no_grad():
        for name, tokens_BS in domains.items():
            accumulator.add_pass(name, lens_forward(model, tokens_BS))
    return accumulator.report()


def test_planted_router_gives_expected_shares_and_coverage():
    expert_of_token = torch.arange(257) % 6
    model = _planted_model(num_experts=6, top_k=2, expert_of_token=expert_of_token)
    generator = torch.Generator().manual_seed(0)
    # domain "mono": 90% of tokens route first to expert 4; domain "mixed": tokens spread over experts 0-2
    mono_BS = torch.where(torch.rand(4, 50, generator=generator) < 0.9, 4,
                          torch.randint(0, 3, (4, 50), generator=generator))
    mixed_BS = torch.randint(0, 3, (4, 50), generator=generator)
    report = _lens_report(model, {"mono": mono_BS, "mixed": mixed_BS})
    first_expert_T = expert_of_token[mono_BS.reshape(-1)]
    for layer in ("0", "1"):
        shares = report["domains"]["mono"]["layers"][layer]["shares"]
        fraction_4 = int((first_expert_T == 4).sum()) / first_expert_T.numel()
        assert shares[4] == pytest.approx(fraction_4 / 2, abs=1e-12)  # top-1 slot of ~90% of tokens, of T*K slots
        assert shares[5] == pytest.approx(fraction_4 / 2, abs=1e-12)  # their second slot
        assert sum(shares) == pytest.approx(1.0)
        assert report["domains"]["mono"]["layers"][layer]["token_fraction"][4] == pytest.approx(fraction_4)
        assert report["domains"]["mono"]["layers"][layer]["coverage_50"] == 2  # 0.45 from expert 4 is < 0.5
        mixed = report["domains"]["mixed"]["layers"][layer]
        assert mixed["shares"][4:] == [0.0, 0.0]  # tokens 0-2 route to experts 0-3 only
        assert mixed["coverage_50"] == 2
    assert report["uniform_share"] == pytest.approx(1 / 6) and report["uniform_token_fraction"] == pytest.approx(2 / 6)


def test_single_expert_domain_is_covered_by_one_expert():
    model = _planted_model(num_experts=5, top_k=1, expert_of_token=torch.arange(257) % 5)
    report = _lens_report(model, {"only_2": torch.full((2, 30), 2), "only_7": torch.full((2, 30), 7)})
    assert report["domains"]["only_2"]["layers"]["0"]["shares"] == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert report["domains"]["only_7"]["layers"]["1"]["shares"] == [0.0, 0.0, 1.0, 0.0, 0.0]  # 7 % 5
    assert report["domains"]["only_2"]["layers"]["0"]["coverage_50"] == 1


@pytest.mark.parametrize("num_experts", [5, 8])
def test_uniform_routing_needs_half_the_experts_for_half_the_decisions(num_experts):
    model = _planted_model(num_experts=num_experts, top_k=1, expert_of_token=torch.arange(257) % num_experts)
    tokens_BS = torch.arange(4 * num_experts * 5).reshape(4, -1) % num_experts  # every expert equally often
    report = _lens_report(model, {"uniform": tokens_BS})
    for layer in ("0", "1"):
        values = report["domains"]["uniform"]["layers"][layer]
        assert values["shares"] == pytest.approx([1 / num_experts] * num_experts)
        assert values["coverage_50"] == math.ceil(num_experts / 2)
    assert coverage_count(torch.full((num_experts,), 3.0)) == math.ceil(num_experts / 2)


def _domain_nll(model, sequences_NL, m=None, renormalise=False):
    with torch.no_grad():
        if m is None:
            return float(sequence_nll(model(sequences_NL[:, :-1]).logits_BSV, sequences_NL[:, 1:]))
        with restrict_to_top_m(model, m, renormalise):
            return float(sequence_nll(model(sequences_NL[:, :-1]).logits_BSV, sequences_NL[:, 1:]))


def test_trained_model_top1_perplexity_is_above_topk_and_equals_a_top_k_1_run(tmp_path):
    model = train_tiny_lm(tiny_config(num_experts=4, top_k=2), steps=120)
    path = save_checkpoint(model, tmp_path / "tiny.ckpt")
    loaded = load_language_model(str(path))
    one_expert = load_language_model(str(path), {"top_k": 1})
    data = DomainDataModule(builtin=["docs"], tokens_per_domain=32 * 32, seq_len=32)
    held_out_NL = data.sequences["docs"]
    full = _domain_nll(loaded, held_out_NL)
    top1 = _domain_nll(loaded, held_out_NL, m=1)
    assert full == _domain_nll(loaded, held_out_NL, m=2)
    assert math.exp(top1 / held_out_NL[:, 1:].numel()) > math.exp(full / held_out_NL[:, 1:].numel()) * 1.001
    assert top1 == pytest.approx(_domain_nll(one_expert, held_out_NL), rel=1e-5)


def test_renormalised_top1_equals_a_top_k_1_run_for_normalised_gates(tmp_path):
    model = random_model(tiny_config(normalize_topk=True, top_k=3, num_experts=6), scale=3.0)
    path = save_checkpoint(model, tmp_path / "norm.ckpt")
    one_expert = load_language_model(str(path), {"top_k": 1})
    sequences_NL = _tokens(4, 25, seed=3)
    expected = _domain_nll(one_expert, sequences_NL)
    assert _domain_nll(model, sequences_NL, m=1, renormalise=True) == pytest.approx(expected, rel=1e-5)
    assert _domain_nll(model, sequences_NL, m=1, renormalise=False) != pytest.approx(expected, rel=2e-5)
