"""Router-gradient fidelity (spec §3): how close a router's gradient is to the dense one.

For one MoE layer, given its input x_TD and the real upstream gradient g_TD = dL/dy of a training
step, compare the router-weight gradient the layer trains with against the dense reference:

- own: the autograd gradient of <g, y> through the layer's own forward (its routing rule, backend
  and normalisation: one implementation, the one training uses);
- dense: the gradient of the all-experts mixture, grad_W sum_t sum_i pi_ti <g_t, E_i(x_t)>, with pi
  the router's scores over every expert (for both ``normalize_topk`` values).

Shape legend: T tokens, D width, E experts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import functional_call

from lit_moe.model.moe_layer import MoELayer


@dataclass
class FidelityResult:
    cosine: float  # cos(grad_W under the layer's router, grad_W under the dense reference)
    norm_ratio: float  # |grad_W router| / |grad_W dense|


@torch.no_grad()
def _expert_scores(layer: MoELayer, x_TD: torch.Tensor, g_TD: torch.Tensor) -> torch.Tensor:
    """h_TE = <g_t, E_i(x_t)> for every token and expert (the dense expert compute, chunked by expert)."""
    g_float = g_TD.float()
    return torch.stack(
        [(layer.experts.forward_expert(e, x_TD).float() * g_float).sum(-1) for e in range(layer.num_experts)], dim=1)


def router_weight_gradients(layer: MoELayer, x_TD: torch.Tensor,
                            g_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient under the layer's own router, gradient under the dense reference) w.r.t. W_router (fp32)."""
    x_TD, g_TD = x_TD.detach(), g_TD.detach()
    weight = layer.router.weight_ED.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y_TD, _ = functional_call(layer, {"router.weight_ED": weight}, (x_TD,))
        grad_own = torch.autograd.grad((y_TD.float() * g_TD.float()).sum(), weight)[0]
        probs_TE = layer.router.score_function.scores(x_TD.float() @ weight.float().t())
        grad_dense = torch.autograd.grad((probs_TE * _expert_scores(layer, x_TD, g_TD)).sum(), weight)[0]
    return grad_own.float(), grad_dense.float()


def gradient_fidelity(layer: MoELayer, x_TD: torch.Tensor, g_TD: torch.Tensor) -> FidelityResult:
    grad_own, grad_dense = router_weight_gradients(layer, x_TD, g_TD)
    own, dense = grad_own.flatten().double(), grad_dense.flatten().double()
    dense_norm = dense.norm()
    if dense_norm == 0:
        return FidelityResult(cosine=1.0 if own.norm() == 0 else 0.0, norm_ratio=float("nan"))
    cosine = (own @ dense) / (own.norm() * dense_norm).clamp_min(1e-300)
    return FidelityResult(cosine=cosine.item(), norm_ratio=(own.norm() / dense_norm).item())
