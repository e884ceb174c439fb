"""The six properties that pin the router semantics (spec §4)."""

from __future__ import annotations

import pytest
import torch

from lit_moe.model.moe_layer import sum_stats
from tests.lit_moe.helpers import ConstantExperts, copy_weights, make_layer

ROUTERS = ["topk", "default", "dense"]


def _run(layer, x_TD, g_TD):
    x_TD = x_TD.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    y_TD, stats = layer(x_TD)
    (y_TD * g_TD).sum().backward()
    grads = {name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}
    return y_TD.detach(), x_TD.grad.clone(), grads, stats


def _nonzero_defaults(layer, seed=3):
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        layer.default_vectors_ED.copy_(torch.randn(layer.default_vectors_ED.shape, generator=generator))


@pytest.mark.parametrize("normalize_topk", [False, True])
def test_a_k_equals_n_all_routers_identical(normalize_topk):
    layers = {r: make_layer(r, num_experts=4, top_k=4, normalize_topk=normalize_topk) for r in ROUTERS}
    for layer in layers.values():
        copy_weights(layers["topk"], layer)
        _nonzero_defaults(layer)  # irrelevant when every expert is selected
    x_TD, g_TD = torch.randn(37, 16), torch.randn(37, 16)
    reference = _run(layers["topk"], x_TD, g_TD)
    for router in ("default", "dense"):
        y, dx, grads, _ = _run(layers[router], x_TD, g_TD)
        torch.testing.assert_close(y, reference[0])
        torch.testing.assert_close(dx, reference[1])
        assert grads.keys() == reference[2].keys()
        for name in grads:
            torch.testing.assert_close(grads[name], reference[2][name], msg=f"{router}: {name}")


def test_b_default_with_beta0_and_constant_experts_equals_dense_router_gradient():
    constants_ED = torch.randn(6, 16)
    layers = {}
    for router in ("default", "dense"):
        layer = make_layer(router, default_beta=0.0)
        layer.experts = ConstantExperts(constants_ED)
        layers[router] = layer
    copy_weights(layers["dense"], layers["default"])
    x_TD, g_TD = torch.randn(50, 16), torch.randn(50, 16)
    # One training step with beta=0 makes the defaults equal to the (constant) expert outputs...
    layers["default"].train()
    _, _, _, stats = _run(layers["default"], x_TD, g_TD)
    layers["default"].update_router_state(sum_stats([stats]))
    touched = stats.default_counts_E > 0
    torch.testing.assert_close(layers["default"].default_vectors_ED[touched], constants_ED[touched])
    assert bool(touched.all()), "every expert should be routed at least once for this check"
    # ...after which Default's router gradient is exactly the dense one.
    _, _, grads_default, _ = _run(layers["default"], x_TD, g_TD)
    _, _, grads_dense, _ = _run(layers["dense"], x_TD, g_TD)
    torch.testing.assert_close(grads_default["router.weight_ED"], grads_dense["router.weight_ED"])


def _probability_and_router_grads(layer, x_TD, g_TD):
    captured = {}

    def keep_probs(module, inputs, output):
        output.probs_TE.retain_grad()
        captured["routing"] = output

    handle = layer.router.register_forward_hook(keep_probs)
    grads = _run(layer, x_TD, g_TD)[2]
    handle.remove()
    routing = captured["routing"]
    dprobs_TE = routing.probs_TE.grad  # None when pi is not in the graph (normalised TopK)
    if dprobs_TE is None:
        dprobs_TE = torch.zeros_like(routing.probs_TE)
    return routing, dprobs_TE, grads["router.weight_ED"]


@pytest.mark.parametrize("mode", ["forward", "straight_through"])
@pytest.mark.parametrize("normalize_topk", [False, True])
def test_c_unselected_experts_get_gradient_only_under_default(mode, normalize_topk):
    """dL/dpi_i = 0 for i not in A under TopK, nonzero under Default. With normalize_topk the
    router rows of experts no token selected get exactly zero gradient under TopK; without it they
    still get the softmax-normalisation term -pi_j * sum_{i in A} pi_i dL/dpi_i (no expert signal)."""
    x_TD, g_TD = torch.randn(3, 16), torch.randn(3, 16)
    topk = make_layer("topk", num_experts=8, top_k=2, normalize_topk=normalize_topk)
    default = make_layer("default", num_experts=8, top_k=2, default_mode=mode, normalize_topk=normalize_topk)
    copy_weights(topk, default)
    _nonzero_defaults(default)
    routing, dprobs_topk, drouter_topk = _probability_and_router_grads(topk, x_TD, g_TD)
    _, dprobs_default, drouter_default = _probability_and_router_grads(default, x_TD, g_TD)
    unselected_TE = torch.ones_like(routing.probs_TE, dtype=torch.bool).scatter(1, routing.expert_idx_TK, False)
    assert torch.count_nonzero(dprobs_topk[unselected_TE]) == 0
    assert (dprobs_default[unselected_TE] != 0).all()
    never_selected = torch.tensor([e for e in range(8) if e not in routing.expert_idx_TK.unique().tolist()])
    assert never_selected.numel() > 0
    assert (drouter_default[never_selected].norm(dim=-1) > 0).all()
    if normalize_topk:
        assert torch.count_nonzero(drouter_topk[never_selected]) == 0


def test_d_ema_equals_masked_mean_by_hand_and_untouched_experts_unchanged():
    layer = make_layer("default", num_experts=8, top_k=1, default_beta=0.75)
    _nonzero_defaults(layer)
    before_ED = layer.default_vectors_ED.clone()
    x_TD = torch.randn(5, 16)
    layer.train()
    y_TD, stats = layer(x_TD)
    routing = layer.router(x_TD)
    layer.update_router_state(sum_stats([stats]))
    expected_ED = before_ED.clone()
    for expert in range(8):
        routed = (routing.expert_idx_TK == expert).any(-1)
        if routed.any():
            outputs_TD = layer.experts.forward_expert(expert, x_TD[routed]).detach()
            expected_ED[expert] = 0.75 * before_ED[expert] + 0.25 * outputs_TD.mean(0)
    torch.testing.assert_close(layer.default_vectors_ED, expected_ED)
    untouched = (stats.default_counts_E == 0)
    assert untouched.any(), "5 tokens on 8 experts must leave some expert untouched"
    assert torch.equal(layer.default_vectors_ED[untouched], before_ED[untouched])


def test_d_output_uses_pre_update_defaults():
    layer = make_layer("default", num_experts=6, top_k=2)
    _nonzero_defaults(layer)
    x_TD = torch.randn(9, 16)
    routing = layer.router(x_TD)
    y_TD, _ = layer(x_TD)
    topk = make_layer("topk", num_experts=6, top_k=2)
    copy_weights(layer, topk)
    y_topk, _ = topk(x_TD)
    expected = y_topk + routing.unselected_probs() @ layer.default_vectors_ED
    torch.testing.assert_close(y_TD, expected)


@pytest.mark.parametrize("mode", ["forward", "straight_through"])
def test_e_no_expert_weight_gradient_through_default_term(mode):
    x_TD, g_TD = torch.randn(21, 16), torch.randn(21, 16)
    topk = make_layer("topk")
    default = make_layer("default", default_mode=mode)
    copy_weights(topk, default)
    _nonzero_defaults(default)
    grads_topk = _run(topk, x_TD, g_TD)[2]
    grads_default = _run(default, x_TD, g_TD)[2]
    for name in ("experts.w_gate_EDF", "experts.w_up_EDF", "experts.w_down_EFD"):
        torch.testing.assert_close(grads_default[name], grads_topk[name])
    assert not default.default_vectors_ED.requires_grad


def test_straight_through_keeps_topk_forward_value():
    x_TD = torch.randn(13, 16)
    topk, default = make_layer("topk"), make_layer("default", default_mode="straight_through")
    copy_weights(topk, default)
    _nonzero_defaults(default)
    torch.testing.assert_close(default(x_TD)[0], topk(x_TD)[0])


def test_f_frozen_in_eval_and_saved_in_state_dict():
    layer = make_layer("default")
    _nonzero_defaults(layer)
    layer.eval()
    before = layer.default_vectors_ED.clone()
    _, stats = layer(torch.randn(10, 16))
    assert stats.default_sums_ED is None  # eval forwards produce no EMA statistics
    layer.update_router_state(stats)
    assert torch.equal(layer.default_vectors_ED, before)
    state = layer.state_dict()
    assert torch.equal(state["default_vectors_ED"], before)
    fresh = make_layer("default", seed=5)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.default_vectors_ED, before)


def test_first_mean_start_sets_the_default_to_the_first_mean_then_continues_the_ema():
    """default_ema_start: first_mean removes the EMA's warm-up from zero (issue 15: 26% after 30 steps at 0.99)."""
    layer = make_layer("default", num_experts=8, top_k=1, default_beta=0.99, default_ema_start="first_mean")
    layer.train()
    x1, x2 = torch.randn(40, 16), torch.randn(40, 16)
    _, stats1 = layer(x1)
    layer.update_router_state(sum_stats([stats1]))
    touched = stats1.default_counts_E > 0
    means1 = stats1.default_sums_ED / stats1.default_counts_E.clamp(min=1).unsqueeze(-1)
    torch.testing.assert_close(layer.default_vectors_ED[touched], means1[touched])
    assert (layer.default_vectors_ED[~touched] == 0).all()
    after_first = layer.default_vectors_ED.clone()
    _, stats2 = layer(x2)
    layer.update_router_state(sum_stats([stats2]))
    means2 = stats2.default_sums_ED / stats2.default_counts_E.clamp(min=1).unsqueeze(-1)
    both = touched & (stats2.default_counts_E > 0)
    torch.testing.assert_close(layer.default_vectors_ED[both], 0.99 * after_first[both] + 0.01 * means2[both])
