"""MoE layer mechanics: sorted dispatch vs a naive per-token reference, backends, losses, balancing."""

from __future__ import annotations

import pytest
import torch

from kernels.reference import expert_group_means
from lit_moe.model.moe_layer import sum_stats
from tests.lit_moe.helpers import copy_weights, make_layer


def naive_topk_output(layer, x_TD):
    """Per-token, per-expert Python loop: the slow reference the sorted dispatch must match."""
    routing = layer.router(x_TD)
    rows = []
    for t in range(x_TD.shape[0]):
        out = torch.zeros(x_TD.shape[1])
        for k in range(layer.top_k):
            expert = int(routing.expert_idx_TK[t, k])
            out = out + routing.weights_TK[t, k] * layer.experts.forward_expert(expert, x_TD[t : t + 1])[0]
        rows.append(out)
    return torch.stack(rows)


@pytest.mark.parametrize("normalize_topk", [False, True])
def test_sorted_dispatch_matches_naive_loop(normalize_topk):
    layer = make_layer("topk", num_experts=5, top_k=2, normalize_topk=normalize_topk)
    x_TD = torch.randn(23, 16)
    torch.testing.assert_close(layer(x_TD)[0], naive_topk_output(layer, x_TD))


@pytest.mark.parametrize("router", ["topk", "default", "dense", "expert_group"])
def test_backends_agree_on_outputs_and_gradients(router):
    x_TD, g_TD = torch.randn(31, 16), torch.randn(31, 16)
    results = {}
    for backend in ("loop", "grouped_mm"):
        layer = make_layer(router, num_experts=7, top_k=3, backend=backend)
        layer.default_vectors_ED.normal_()
        x = x_TD.clone().requires_grad_(True)
        y, _ = layer(x)
        (y * g_TD).sum().backward()
        results[backend] = (y.detach(), x.grad, {n: p.grad for n, p in layer.named_parameters()})
    torch.testing.assert_close(results["loop"][0], results["grouped_mm"][0])
    torch.testing.assert_close(results["loop"][1], results["grouped_mm"][1])
    for name, grad in results["loop"][2].items():
        torch.testing.assert_close(grad, results["grouped_mm"][2][name], msg=name)


def test_empty_experts_are_handled():
    layer = make_layer("default", num_experts=16, top_k=1)
    x_TD = torch.randn(3, 16)
    y_TD, stats = layer(x_TD)
    assert torch.isfinite(y_TD).all()
    assert int((stats.default_counts_E == 0).sum()) >= 13


def test_aux_loss_is_minimal_at_uniform_routing():
    layer = make_layer("topk", num_experts=4, top_k=1, aux_loss_coef=0.01)
    with torch.no_grad():
        layer.router.weight_ED.zero_()  # pi uniform
    # Uniform probabilities and an even load: alpha * N * sum_i (1/N)(1/N) = alpha.
    x_TD = torch.randn(64, 16)
    _, stats = layer(x_TD)
    fraction_E = stats.load_counts_E / stats.load_counts_E.sum()
    expected = 0.01 * 4 * (fraction_E * 0.25).sum()
    torch.testing.assert_close(stats.aux_loss, expected)
    torch.testing.assert_close(stats.aux_loss, torch.tensor(0.01))
    with torch.no_grad():
        layer.router.weight_ED.normal_(std=3.0)
    assert layer(x_TD)[1].aux_loss > 0.01


def test_z_loss_matches_definition():
    layer = make_layer("topk", z_loss_coef=1e-3)
    x_TD = torch.randn(10, 16)
    _, stats = layer(x_TD)
    logits = x_TD @ layer.router.weight_ED.t()
    torch.testing.assert_close(stats.z_loss, 1e-3 * torch.logsumexp(logits, -1).pow(2).mean())


def test_aux_loss_free_bias_steers_selection_but_not_weights():
    layer = make_layer("topk", num_experts=4, top_k=1, bias_update_rate=0.5)
    x_TD = torch.randn(40, 16)
    _, stats = layer(x_TD)
    load_E = stats.load_counts_E
    layer.update_router_state(sum_stats([stats]))
    expected_bias = 0.5 * torch.sign(load_E.mean() - load_E)
    torch.testing.assert_close(layer.router.expert_bias_E, expected_bias)
    with torch.no_grad():
        layer.router.expert_bias_E.copy_(torch.tensor([10.0, 0.0, 0.0, 0.0]))
    routing = layer.router(x_TD)
    assert (routing.expert_idx_TK == 0).all()
    torch.testing.assert_close(routing.weights_TK[:, 0], routing.probs_TE[:, 0])


def test_expert_group_output_matches_definition():
    layer = make_layer("expert_group", num_experts=5, top_k=2)
    x_TD = torch.randn(19, 16)
    routing = layer.router(x_TD)
    idx_TK = routing.expert_idx_TK
    raw_TKD = torch.stack([torch.stack([layer.experts.forward_expert(int(idx_TK[t, k]), x_TD[t : t + 1])[0]
                                        for k in range(2)]) for t in range(19)])
    means = expert_group_means(raw_TKD, idx_TK, 5)[0]
    topk = make_layer("topk", num_experts=5, top_k=2)
    copy_weights(layer, topk)
    expected = topk(x_TD)[0].clone()
    for t in range(19):
        for i in range(5):
            if i not in idx_TK[t]:
                estimate = sum(means[int(j), i] for j in idx_TK[t]) / 2
                expected[t] += routing.probs_TE[t, i] * estimate
    torch.testing.assert_close(layer(x_TD)[0], expected)


def test_expert_group_term_sends_gradient_to_expert_weights():
    layer = make_layer("expert_group", num_experts=4, top_k=2)
    topk = make_layer("topk", num_experts=4, top_k=2)
    copy_weights(layer, topk)
    x_TD, g_TD = torch.randn(30, 16), torch.randn(30, 16)
    (layer(x_TD)[0] * g_TD).sum().backward()
    (topk(x_TD)[0] * g_TD).sum().backward()
    assert not torch.allclose(layer.experts.w_down_EFD.grad, topk.experts.w_down_EFD.grad)
