"""Every router's output and router gradient against an independent float64 implementation of the
definitions (spec §1, lit_moe/model/routers/base.py), for both ``normalize_topk`` values; and the
fidelity metric's dense target against the float64 gradient of the all-experts mixture.

Nothing of the layer is called here except to read its weights: experts, softmax, top-K, the
normalisation, the EMA defaults and the expert-group means are written out per token in float64.
"""

from __future__ import annotations

import pytest
import torch

from lit_moe.metrics.gradient_fidelity import router_weight_gradients
from tests.lit_moe.helpers import make_layer

NUM_TOKENS, NUM_EXPERTS, TOP_K = 24, 5, 2


def _expert(weights, e, x_D):
    gate, up, down = weights
    return (torch.nn.functional.silu(x_D @ gate[e]) * (x_D @ up[e])) @ down[e]


def _float64_objective(router, normalize, x_TD, g_TD, router_W, weights, defaults_ED, score="softmax"):
    """(y_TD, objective whose gradient w.r.t. router_W is the rule's router gradient) in float64."""
    logits_TE = x_TD @ router_W.t()
    probs_TE = torch.softmax(logits_TE, -1) if score == "softmax" else torch.sigmoid(logits_TE)
    top_TK = probs_TE.detach().topk(TOP_K, -1).indices
    outputs_TED = torch.stack([torch.stack([_expert(weights, e, x_TD[t]) for e in range(NUM_EXPERTS)])
                               for t in range(NUM_TOKENS)])
    # expert-group means mu[j, i] over this batch's tokens routed to both j and i
    means = torch.zeros(NUM_EXPERTS, NUM_EXPERTS, x_TD.shape[1], dtype=torch.float64)
    counts = torch.zeros(NUM_EXPERTS, NUM_EXPERTS, dtype=torch.float64)
    for t in range(NUM_TOKENS):
        chosen = top_TK[t].tolist()
        for j in chosen:
            for i in chosen:
                if i != j:
                    means[j, i] += outputs_TED[t, i].detach()
                    counts[j, i] += 1
    means = means / counts.clamp(min=1).unsqueeze(-1)
    ys, objective = [], 0.0
    for t in range(NUM_TOKENS):
        chosen = top_TK[t].tolist()
        missing = [i for i in range(NUM_EXPERTS) if i not in chosen]
        pi = probs_TE[t]
        w = pi[chosen] / pi[chosen].sum() if normalize else pi[chosen]
        routed = sum(w[k] * outputs_TED[t, e] for k, e in enumerate(chosen))
        if router == "topk":
            ys.append(routed)
            objective = objective + (routed * g_TD[t]).sum()
            continue
        if router == "default":
            estimate = {i: defaults_ED[i] for i in missing}
        elif router == "expert_group":
            estimate = {i: sum(means[j, i] for j in chosen) / TOP_K for i in missing}
        else:  # dense: the true outputs
            estimate = {i: outputs_TED[t, i].detach() for i in missing}
        extra = sum(pi[i].detach() * estimate[i] for i in missing) if router != "dense" else 0.0
        ys.append(routed.detach() + extra)
        # the estimator's router gradient: the all-experts mixture with estimates for the missing ones
        mixture = sum(pi[e] * outputs_TED[t, e].detach() for e in chosen) + sum(pi[i] * estimate[i] for i in missing)
        objective = objective + (mixture * g_TD[t]).sum()
    return torch.stack(ys), objective


@pytest.mark.parametrize("score", ["softmax", "sigmoid"])
@pytest.mark.parametrize("normalize_topk", [False, True])
@pytest.mark.parametrize("router", ["topk", "default", "dense", "expert_group"])
def test_router_output_and_gradient_match_float64_definition(router, normalize_topk, score):
    """Also for the sigmoid score function (DeepSeek-V3 style): the rules do not depend on the scores."""
    layer = make_layer(router, num_experts=NUM_EXPERTS, top_k=TOP_K, normalize_topk=normalize_topk,
                       score_function=score)
    with torch.no_grad():
        layer.default_vectors_ED.normal_(generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(7)
    x_TD, g_TD = torch.randn(NUM_TOKENS, 16, generator=gen), torch.randn(NUM_TOKENS, 16, generator=gen)

    y_TD, _ = layer(x_TD)
    (grad_W,) = torch.autograd.grad((y_TD * g_TD).sum(), [layer.router.weight_ED])

    router_W = layer.router.weight_ED.detach().double().requires_grad_(True)
    weights = [w.detach().double() for w in (layer.experts.w_gate_EDF, layer.experts.w_up_EDF,
                                            layer.experts.w_down_EFD)]
    want_y, objective = _float64_objective(router, normalize_topk, x_TD.double(), g_TD.double(), router_W, weights,
                                           layer.default_vectors_ED.double(), score)
    (want_grad,) = torch.autograd.grad(objective, [router_W])
    torch.testing.assert_close(y_TD.double(), want_y, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_W.double(), want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalize_topk", [False, True])
def test_fidelity_dense_target_is_the_all_experts_mixture(normalize_topk):
    layer = make_layer("topk", num_experts=NUM_EXPERTS, top_k=TOP_K, normalize_topk=normalize_topk)
    gen = torch.Generator().manual_seed(11)
    x_TD, g_TD = torch.randn(NUM_TOKENS, 16, generator=gen), torch.randn(NUM_TOKENS, 16, generator=gen)
    own, dense = router_weight_gradients(layer, x_TD, g_TD)

    router_W = layer.router.weight_ED.detach().double().requires_grad_(True)
    weights = [w.detach().double() for w in (layer.experts.w_gate_EDF, layer.experts.w_up_EDF,
                                            layer.experts.w_down_EFD)]
    _, dense_objective = _float64_objective("dense", normalize_topk, x_TD.double(), g_TD.double(), router_W, weights,
                                            None)
    torch.testing.assert_close(dense.double(), torch.autograd.grad(dense_objective, [router_W])[0],
                               rtol=1e-4, atol=1e-6)
    _, topk_objective = _float64_objective("topk", normalize_topk, x_TD.double(), g_TD.double(), router_W, weights,
                                           None)
    torch.testing.assert_close(own.double(), torch.autograd.grad(topk_objective, [router_W])[0], rtol=1e-4, atol=1e-6)
