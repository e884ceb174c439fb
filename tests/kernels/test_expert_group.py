"""Expert-group approximation: scatter (atomic adds) and gather kernels vs references, with gradients.

Shape legend: T tokens, D model width, E experts, K experts per token, S routing slots.
"""

from __future__ import annotations

import pytest
import torch

from kernels import expert_group_gather, expert_group_gather_reference, expert_group_scatter
from kernels.reference import expert_group_means
from tests.kernels.helpers import CASES, assert_close, random_routing

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _problem(case):
    num_tokens, d_model, num_experts, top_k, _, empty = CASES[case]
    torch.manual_seed(num_tokens)
    routing = random_routing(num_tokens, num_experts, top_k, empty, DEVICE)
    raw_SD = torch.randn(routing.token_of_slot_S.shape[0], d_model, device=DEVICE)
    probs_TE = torch.softmax(torch.randn(num_tokens, num_experts, device=DEVICE), -1)
    return routing, raw_SD, probs_TE


def _run(impl, routing, raw_SD, probs_TE, num_experts, top_k):
    raw = raw_SD.clone().requires_grad_()
    probs = probs_TE.clone().requires_grad_()
    means_EED, counts_EE = expert_group_scatter(raw, routing.token_of_slot_S, routing.expert_of_slot_S,
                                                routing.idx_TK, num_experts, impl=impl)
    unselected_TE = probs.scatter(1, routing.idx_TK, 0.0)
    estimate_TD = expert_group_gather(unselected_TE, means_EED, routing.token_of_slot_S, routing.offsets_E, top_k,
                                      impl=impl)
    gen = torch.Generator().manual_seed(3)
    grad_means = torch.randn(means_EED.shape, generator=gen).to(DEVICE)
    grad_est = torch.randn(estimate_TD.shape, generator=gen).to(DEVICE)
    loss = (means_EED * grad_means).sum() + (estimate_TD * grad_est).sum()
    grad_raw, grad_probs = torch.autograd.grad(loss, [raw, probs])
    return means_EED.detach(), counts_EE, estimate_TD.detach(), grad_raw, grad_probs


@pytest.mark.parametrize("case", list(CASES))
def test_expert_group_kernels_match_reference(case):
    num_experts, top_k = CASES[case][2], CASES[case][3]
    routing, raw_SD, probs_TE = _problem(case)
    expected = _run("reference", routing, raw_SD, probs_TE, num_experts, top_k)
    actual = _run("triton", routing, raw_SD, probs_TE, num_experts, top_k)
    for name, got, want in zip(["means", "counts", "estimate", "grad raw", "grad probs"], actual, expected):
        assert_close(got, want, rtol=1e-5, what=name)
    if top_k == 1:  # no pair of experts shares a token: every estimate is zero
        assert actual[2].abs().max() == 0


@pytest.mark.parametrize("case", ["odd_empty", "k_equals_n", "multi_tile"])
def test_scatter_matches_layer_reference(case):
    """Slot-layout scatter kernel == the token-major oracle kernels.reference.expert_group_means."""
    num_experts, top_k = CASES[case][2], CASES[case][3]
    routing, raw_SD, _ = _problem(case)
    means_EED, counts_EE = expert_group_scatter(raw_SD, routing.token_of_slot_S, routing.expert_of_slot_S,
                                                routing.idx_TK, num_experts, impl="triton")
    raw_TKD = torch.empty_like(raw_SD)
    raw_TKD[routing.slot_order_S] = raw_SD
    expected = expert_group_means(raw_TKD.view(-1, top_k, raw_SD.shape[1]), routing.idx_TK, num_experts)[0]
    assert_close(means_EED, expected, rtol=1e-5)
    assert (counts_EE.diagonal() == 0).all()


def test_gather_reference_matches_formula():
    """estimate_t = (1/K) sum_{j in A(t)} sum_{i not in A(t)} pi_ti mu[j, i], token by token."""
    num_experts, top_k = 6, 2
    routing, raw_SD, probs_TE = _problem("odd_empty")
    means_EED = torch.randn(num_experts, num_experts, raw_SD.shape[1], device=DEVICE)
    unselected_TE = probs_TE.scatter(1, routing.idx_TK, 0.0)
    estimate = expert_group_gather_reference(unselected_TE, means_EED, routing.token_of_slot_S, routing.offsets_E,
                                             top_k)
    for t in range(probs_TE.shape[0]):
        chosen = routing.idx_TK[t].tolist()
        want = sum(probs_TE[t, i] * means_EED[j, i] for j in chosen for i in range(num_experts) if i not in chosen)
        assert_close(estimate[t], want / top_k, rtol=1e-5)
