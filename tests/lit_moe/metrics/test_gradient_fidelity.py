"""Router-gradient fidelity: the closed form must equal real autograd, and the ordering must hold."""

from __future__ import annotations

import pytest
import torch

from lit_moe.metrics.gradient_fidelity import gradient_fidelity, router_weight_gradients
from lit_moe.model.moe_layer import sum_stats
from tests.lit_moe.helpers import ConstantExperts, copy_weights, make_layer


def _autograd_router_grad(layer, x_TD, g_TD):
    layer.zero_grad(set_to_none=True)
    y_TD, _ = layer(x_TD)
    (y_TD * g_TD).sum().backward()
    return layer.router.weight_ED.grad.clone()


@pytest.mark.parametrize("router", ["topk", "default", "dense", "expert_group"])
@pytest.mark.parametrize("normalize_topk", [False, True])
def test_closed_form_router_gradient_equals_autograd(router, normalize_topk):
    layer = make_layer(router, num_experts=6, top_k=2, normalize_topk=normalize_topk)
    layer.default_vectors_ED.normal_()
    x_TD, g_TD = torch.randn(40, 16), torch.randn(40, 16)
    own, dense = router_weight_gradients(layer, x_TD, g_TD)
    torch.testing.assert_close(own, _autograd_router_grad(layer, x_TD, g_TD))
    dense_layer = make_layer("dense", num_experts=6, top_k=2, normalize_topk=normalize_topk)
    copy_weights(layer, dense_layer)
    torch.testing.assert_close(dense, _autograd_router_grad(dense_layer, x_TD, g_TD))


def test_dense_router_fidelity_is_one_and_topk_below_one():
    x_TD, g_TD = torch.randn(64, 16), torch.randn(64, 16)
    dense = gradient_fidelity(make_layer("dense"), x_TD, g_TD)
    assert dense.cosine == pytest.approx(1.0, abs=1e-9)
    assert dense.norm_ratio == pytest.approx(1.0, abs=1e-9)
    topk = gradient_fidelity(make_layer("topk"), x_TD, g_TD)
    assert topk.cosine < 0.99
    assert topk.norm_ratio != pytest.approx(1.0, abs=1e-3)


def test_default_with_beta0_and_constant_experts_has_fidelity_exactly_one():
    layer = make_layer("default", default_beta=0.0)
    layer.experts = ConstantExperts(torch.randn(6, 16))
    x_TD, g_TD = torch.randn(80, 16), torch.randn(80, 16)
    _, stats = layer(x_TD)
    layer.update_router_state(sum_stats([stats]))
    assert bool((stats.default_counts_E > 0).all())
    result = gradient_fidelity(layer, x_TD, g_TD)
    assert result.cosine == pytest.approx(1.0, abs=1e-9)


class MostlyConstantExperts(ConstantExperts):
    """E_i(x) = c_i + 0.1 * x A_i: outputs that an EMA mean estimates well."""

    def __init__(self, constants_ED: torch.Tensor) -> None:
        super().__init__(constants_ED)
        num_experts, d = constants_ED.shape
        self.mix_EDD = torch.nn.Parameter(0.1 * torch.randn(num_experts, d, d))

    def outputs(self, x_SD, dispatch):
        return self.constants_ED[dispatch.expert_of_slot_S] + torch.einsum(
            "sd,sde->se", x_SD, self.mix_EDD[dispatch.expert_of_slot_S])

    def forward_expert(self, expert, x_TD):
        return self.constants_ED[expert] + x_TD @ self.mix_EDD[expert]


def test_ordering_dense_then_default_then_topk():
    torch.manual_seed(0)
    x_TD, g_TD = torch.randn(256, 16), torch.randn(256, 16)
    results = {}
    for router in ("topk", "default", "dense"):
        layer = make_layer(router, default_beta=0.0)
        layer.experts = MostlyConstantExperts(torch.randn(6, 16, generator=torch.Generator().manual_seed(1)))
        with torch.no_grad():
            layer.experts.mix_EDD.copy_(0.1 * torch.randn(6, 16, 16, generator=torch.Generator().manual_seed(2)))
        _, stats = layer(x_TD)
        layer.update_router_state(sum_stats([stats]))
        results[router] = gradient_fidelity(layer, x_TD, g_TD).cosine
    assert results["dense"] == pytest.approx(1.0)
    assert results["dense"] > results["default"] > results["topk"]
