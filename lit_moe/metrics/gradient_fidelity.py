"""Router-gradient fidelity (spec §3): how close a router's sparse gradient is to the dense one.

For one MoE layer, given its input x_TD and the real upstream gradient g_TD = dL/dy of a training
step, the router-weight gradient of any router in this family is the gradient of

    sum_t [ sum_{i in A_t} w_ti(pi_t) <g_t, E_i(x_t)>  +  sum_{i not in A_t} pi_ti u_ti ]

where u_ti = <g_t, estimate of E_i(x_t)> is 0 for TopK, <g_t, Ehat_i> for Default MoE,
<g_t, Ehat_i(x_t)> for the expert-group approximation, and the true <g_t, E_i(x_t)> for the
dense straight-through reference. Shape legend: T tokens, D width, E experts, K active.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_moe.model.experts import Dispatch
from lit_moe.model.expert_group import expert_group_means_sorted
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


@torch.no_grad()
def _estimate_scores(layer: MoELayer, x_TD: torch.Tensor, g_TD: torch.Tensor, expert_idx_TK: torch.Tensor,
                     scores_TE: torch.Tensor) -> torch.Tensor:
    """u_TE for the layer's own router."""
    if layer.router_name == "topk":
        return torch.zeros_like(scores_TE)
    if layer.router_name == "dense":
        return scores_TE
    if layer.router_name == "default":
        return g_TD.float() @ layer.default_vectors_ED.float().t()
    # expert_group: u_ti = (1/K) sum_{j in A_t} <g_t, mu[j, i]>
    num_tokens, num_experts = expert_idx_TK.shape[0], layer.num_experts
    dispatch = Dispatch.from_indices(expert_idx_TK, num_experts)
    raw_SD = layer.experts.forward_tokens(x_TD, dispatch)
    means_EED = expert_group_means_sorted(raw_SD.float(), dispatch, expert_idx_TK, num_experts)
    projected_TJI = (g_TD.float() @ means_EED.reshape(num_experts * num_experts, -1).t()).view(
        num_tokens, num_experts, num_experts)
    return projected_TJI.gather(1, expert_idx_TK.unsqueeze(-1).expand(-1, -1, num_experts)).mean(1)


def router_weight_gradients(layer: MoELayer, x_TD: torch.Tensor, g_TD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(gradient under the layer's own router, gradient under the dense reference) w.r.t. W_router."""
    x_TD = x_TD.detach()
    weight_ED = layer.router.weight_ED.detach().float().clone().requires_grad_(True)
    with torch.enable_grad():
        routing = layer.router.route_with_weight(x_TD, weight_ED)
    scores_TE = _expert_scores(layer, x_TD, g_TD)
    estimates_TE = _estimate_scores(layer, x_TD, g_TD, routing.expert_idx_TK, scores_TE)
    with torch.enable_grad():
        selected = (routing.weights_TK * scores_TE.gather(1, routing.expert_idx_TK)).sum()
        unselected_TE = routing.unselected_probs()
        own = selected + (unselected_TE * estimates_TE).sum()
        dense = selected + (unselected_TE * scores_TE).sum()
        grad_own = torch.autograd.grad(own, weight_ED, retain_graph=True)[0]
        grad_dense = torch.autograd.grad(dense, weight_ED)[0]
    return grad_own, grad_dense


def gradient_fidelity(layer: MoELayer, x_TD: torch.Tensor, g_TD: torch.Tensor) -> FidelityResult:
    grad_own, grad_dense = router_weight_gradients(layer, x_TD, g_TD)
    own, dense = grad_own.flatten().double(), grad_dense.flatten().double()
    dense_norm = dense.norm()
    if dense_norm == 0:
        return FidelityResult(cosine=1.0 if own.norm() == 0 else 0.0, norm_ratio=float("nan"))
    cosine = (own @ dense) / (own.norm() * dense_norm).clamp_min(1e-300)
    return FidelityResult(cosine=cosine.item(), norm_ratio=(own.norm() / dense_norm).item())
