"""Expert-group approximation (spec §1.4): group means, partner cells and the fused routed-plus-estimate
combination (hand-written backward) against plain-autograd references.

Shape legend: T tokens, D model width, E experts, K experts per token, S expert-sorted slots.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from kernels.reference import expert_group_means as reference_means
from lit_moe.model.expert_group import combine_with_group_estimate, group_means_from_slots, slot_partners
from lit_moe.model.experts import Dispatch


def expert_group_means(raw_TKD, idx_TK, num_experts):
    return reference_means(raw_TKD, idx_TK, num_experts)[0]

# (T, E, K, D, experts nobody picks): odd sizes, empty experts, K=1, K=N
CASES = {
    "odd_empty": (23, 6, 2, 7, (3,)),
    "k3": (31, 5, 3, 10, ()),
    "k1_empty": (9, 4, 1, 6, (0,)),
    "k_equals_n": (11, 4, 4, 5, ()),
}


def random_choice(num_tokens, num_experts, top_k, empty, seed=0):
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([e for e in range(num_experts) if e not in empty])
    return torch.stack([allowed[torch.randperm(len(allowed), generator=gen)[:top_k]] for _ in range(num_tokens)])


def test_expert_group_means_match_brute_force():
    torch.manual_seed(0)
    num_tokens, top_k, num_experts, d = 17, 3, 5, 4
    idx_TK = random_choice(num_tokens, num_experts, top_k, ())
    raw_TKD = torch.randn(num_tokens, top_k, d)
    means = expert_group_means(raw_TKD, idx_TK, num_experts)
    for j, i in itertools.product(range(num_experts), range(num_experts)):
        rows = [raw_TKD[t, list(idx_TK[t]).index(i)] for t in range(num_tokens)
                if j != i and j in idx_TK[t] and i in idx_TK[t]]
        expected = torch.stack(rows).mean(0) if rows else torch.zeros(d)
        torch.testing.assert_close(means[j, i], expected)


@pytest.mark.parametrize("case", list(CASES))
def test_slot_partners_mark_the_other_experts_of_the_token(case):
    num_tokens, num_experts, top_k, _, empty = CASES[case]
    idx_TK = random_choice(num_tokens, num_experts, top_k, empty)
    dispatch = Dispatch.from_indices(idx_TK, num_experts)
    partners_SE = slot_partners(dispatch, idx_TK, num_experts)
    assert partners_SE.shape == (num_tokens * top_k, num_experts)
    for s in range(partners_SE.shape[0]):
        token, own = int(dispatch.token_of_slot_S[s]), int(dispatch.expert_of_slot_S[s])
        expected = torch.zeros(num_experts)
        expected[[int(e) for e in idx_TK[token] if int(e) != own]] = 1.0
        torch.testing.assert_close(partners_SE[s], expected)


@pytest.mark.parametrize("case", list(CASES))
def test_sorted_means_match_the_reference(case):
    num_tokens, num_experts, top_k, d, empty = CASES[case]
    idx_TK = random_choice(num_tokens, num_experts, top_k, empty, seed=1)
    raw_TKD = torch.randn(num_tokens, top_k, d)
    dispatch = Dispatch.from_indices(idx_TK, num_experts)
    raw_SD = raw_TKD.reshape(-1, d)[dispatch.slot_order_S]
    partners_SE = slot_partners(dispatch, idx_TK, num_experts)
    for use_grouped_mm in (True, False):  # the production layout is [i, j] = mu[j, i]
        means_IJD, counts_IJ = group_means_from_slots(raw_SD, partners_SE, dispatch, use_grouped_mm)
        expected_means, expected_counts = reference_means(raw_TKD, idx_TK, num_experts)
        torch.testing.assert_close(means_IJD.transpose(0, 1), expected_means)
        torch.testing.assert_close(counts_IJ.t(), expected_counts)


def reference_combination(raw_TKD, weights_TK, probs_TE, idx_TK, num_experts):
    """Spec §1.4 by plain autograd: sum_{i in A} w_i E_i + sum_{i not in A} pi_i (1/K) sum_{j in A} mu[j, i]."""
    top_k = idx_TK.shape[1]
    means_EED = expert_group_means(raw_TKD, idx_TK, num_experts)
    unselected_TE = probs_TE.scatter(1, idx_TK, 0.0)
    y_TD = (weights_TK.unsqueeze(-1) * raw_TKD).sum(1)
    for k in range(top_k):
        y_TD = y_TD + torch.einsum("te,ted->td", unselected_TE, means_EED[idx_TK[:, k]]) / top_k
    return y_TD


@pytest.mark.parametrize("use_grouped_mm", [True, False], ids=["grouped_mm", "loop"])
@pytest.mark.parametrize("case", list(CASES))
def test_fused_combination_matches_autograd_reference(case, use_grouped_mm):
    num_tokens, num_experts, top_k, d, empty = CASES[case]
    torch.manual_seed(2)
    idx_TK = random_choice(num_tokens, num_experts, top_k, empty, seed=2)
    raw_TKD = torch.randn(num_tokens, top_k, d, requires_grad=True)
    weights_TK = torch.rand(num_tokens, top_k, requires_grad=True)
    probs_TE = torch.softmax(torch.randn(num_tokens, num_experts), -1).requires_grad_()
    g_TD = torch.randn(num_tokens, d)
    expected = reference_combination(raw_TKD, weights_TK, probs_TE, idx_TK, num_experts)
    expected_grads = torch.autograd.grad((expected * g_TD).sum(), (raw_TKD, weights_TK, probs_TE))

    dispatch = Dispatch.from_indices(idx_TK, num_experts)
    raw_SD = raw_TKD.detach().reshape(-1, d)[dispatch.slot_order_S].requires_grad_()
    weight_S = weights_TK.detach().reshape(-1)[dispatch.slot_order_S].requires_grad_()
    probs = probs_TE.detach().clone().requires_grad_()
    actual = combine_with_group_estimate(raw_SD, weight_S, probs.scatter(1, idx_TK, 0.0), dispatch, idx_TK,
                                         num_experts, use_grouped_mm)
    grad_raw_SD, grad_weight_S, grad_probs = torch.autograd.grad((actual * g_TD).sum(), (raw_SD, weight_S, probs))

    torch.testing.assert_close(actual, expected)
    unsort_S = torch.argsort(dispatch.slot_order_S)
    torch.testing.assert_close(grad_raw_SD[unsort_S].view(num_tokens, top_k, d), expected_grads[0])
    torch.testing.assert_close(grad_weight_S[unsort_S].view(num_tokens, top_k), expected_grads[1])
    torch.testing.assert_close(grad_probs, expected_grads[2])
    if top_k == num_experts:  # nothing is missing: the estimate and its router gradient vanish
        assert grad_probs.abs().max() == 0


def test_fused_combination_in_bf16_stays_close_to_fp32():
    num_tokens, num_experts, top_k, d = 64, 6, 2, 32
    idx_TK = random_choice(num_tokens, num_experts, top_k, ())
    dispatch = Dispatch.from_indices(idx_TK, num_experts)
    raw_SD, weight_S = torch.randn(num_tokens * top_k, d), torch.rand(num_tokens * top_k)
    unselected_TE = torch.softmax(torch.randn(num_tokens, num_experts), -1).scatter(1, idx_TK, 0.0)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        raw = raw_SD.to(dtype).requires_grad_()
        weight, unselected = weight_S.clone().requires_grad_(), unselected_TE.clone().requires_grad_()
        y_TD = combine_with_group_estimate(raw, weight, unselected, dispatch, idx_TK, num_experts, True)
        assert y_TD.dtype == dtype
        grads = torch.autograd.grad(y_TD.float().sum(), (raw, weight, unselected))
        assert grads[1].dtype == torch.float32 and grads[2].dtype == torch.float32
        results[dtype] = (y_TD.float(), *(g.float() for g in grads))
    for got, want in zip(results[torch.bfloat16], results[torch.float32]):
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("backend", ["loop", "grouped_mm", "fused"])
def test_expert_group_layer_gradients_match_plain_autograd(backend):
    """Every parameter gradient of the expert-group layer (router and the three expert weights) equals
    plain autograd through the token-major definition (per-token expert calls + reference means)."""
    from tests.lit_moe.helpers import make_layer

    layer = make_layer("expert_group", num_experts=5, top_k=2, backend=backend)
    x_TD, g_TD = torch.randn(29, 16), torch.randn(29, 16)
    params = [layer.router.weight_ED, layer.experts.w_gate_EDF, layer.experts.w_up_EDF, layer.experts.w_down_EFD]
    actual = torch.autograd.grad((layer(x_TD)[0] * g_TD).sum(), params)

    routing = layer.router(x_TD)
    idx_TK = routing.expert_idx_TK
    raw_TKD = torch.stack([torch.stack([layer.experts.forward_expert(int(idx_TK[t, k]), x_TD[t : t + 1])[0]
                                        for k in range(2)]) for t in range(29)])
    expected_y = reference_combination(raw_TKD, routing.weights_TK, routing.probs_TE, idx_TK, 5)
    expected = torch.autograd.grad((expected_y * g_TD).sum(), params)
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
