"""Fused routing (softmax + top-K + default term): Triton kernel vs the pure-torch reference.

Shape legend: T tokens, E experts, K experts per token, D model width.
"""

from __future__ import annotations

import pytest
import torch

from kernels import fused_routing, fused_routing_reference
from kernels.reference import select_experts
from tests.kernels.helpers import assert_close

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (T, E, K, D): odd sizes, K=1, K=N, E above one 16-wide block
CASES = [(37, 6, 2, 40), (19, 5, 1, 33), (13, 4, 4, 24), (70, 20, 3, 72)]


def _run(impl, logits_TE, top_k, normalize, bias_E, defaults_ED, seed=1):
    logits = logits_TE.detach().clone().requires_grad_()
    probs, idx, weights, default = fused_routing(logits, top_k, normalize, bias_E, defaults_ED, impl=impl)
    gen = torch.Generator().manual_seed(seed)
    loss = (probs * torch.randn(probs.shape, generator=gen).to(DEVICE)).sum()
    loss = loss + (weights * torch.randn(weights.shape, generator=gen).to(DEVICE)).sum()
    if default is not None:
        loss = loss + (default * torch.randn(default.shape, generator=gen).to(DEVICE)).sum()
    (grad,) = torch.autograd.grad(loss, [logits])
    return probs.detach(), idx, weights.detach(), default, grad


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("with_default", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_fused_routing_matches_reference(case, with_default, normalize):
    num_tokens, num_experts, top_k, d_model = case
    torch.manual_seed(sum(case))
    logits_TE = torch.randn(num_tokens, num_experts, device=DEVICE) * 2
    defaults_ED = torch.randn(num_experts, d_model, device=DEVICE) if with_default else None
    bias_E = torch.randn(num_experts, device=DEVICE) * 0.1 if normalize else None  # steer selection too
    expected = _run("reference", logits_TE, top_k, normalize, bias_E, defaults_ED)
    actual = _run("triton", logits_TE, top_k, normalize, bias_E, defaults_ED)
    assert_close(actual[0], expected[0], rtol=1e-6, what="probs")
    assert torch.equal(actual[1], expected[1]), "selected experts differ"
    assert_close(actual[2], expected[2], rtol=1e-6, what="weights")
    if with_default:
        assert_close(actual[3], expected[3], rtol=1e-5, what="default term")
    else:
        assert actual[3] is None
    assert_close(actual[4], expected[4], rtol=1e-5, what="grad logits")


def test_reference_matches_router_selection():
    """The reference selects and weights exactly like lit_moe's router."""
    logits_TE = torch.randn(29, 7)
    bias_E = torch.randn(7) * 0.1
    probs, idx, weights, _ = fused_routing_reference(logits_TE, 3, True, bias_E)
    router_idx, router_weights = select_experts(logits_TE, torch.softmax(logits_TE, -1), bias_E, 3, True)
    assert torch.equal(idx, router_idx)
    torch.testing.assert_close(weights, router_weights)


def test_default_term_gives_unselected_rows_gradient():
    """Every unselected expert's logit gets gradient <g, Ehat_i> through the default term."""
    logits_TE = torch.randn(5, 6, device=DEVICE)
    defaults_ED = torch.randn(6, 8, device=DEVICE)
    logits = logits_TE.clone().requires_grad_()
    probs, idx, _, default = fused_routing(logits, 2, False, None, defaults_ED, impl="triton")
    grad_default = torch.randn_like(default)
    (grad,) = torch.autograd.grad((default * grad_default).sum(), [logits])
    grad_probs = (grad_default @ defaults_ED.t()).scatter(1, idx, 0.0)
    expected = probs * (grad_probs - (probs * grad_probs).sum(-1, keepdim=True))
    assert_close(grad, expected, rtol=1e-5)
    assert (grad != 0).all()


def test_normalized_weights_gradient_reaches_only_selected_logits():
    """Normalised weights are a softmax of the selected logits: unselected logits get exactly zero."""
    logits = torch.randn(23, 9, device=DEVICE).requires_grad_()
    _, idx, weights, _ = fused_routing(logits, 3, True, impl="triton")
    (grad,) = torch.autograd.grad((weights * torch.randn_like(weights)).sum(), [logits])
    unselected = torch.ones_like(grad, dtype=torch.bool).scatter(1, idx, False)
    assert (grad[unselected] == 0).all()
    assert (grad[~unselected] != 0).all()
