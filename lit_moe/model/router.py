"""Softmax router with top-K selection and optional aux-loss-free balancing biases.

Shape legend: T tokens, D model width, E experts, K experts per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RouterOutput:
    logits_TE: torch.Tensor
    probs_TE: torch.Tensor  # softmax over all E experts (fp32)
    expert_idx_TK: torch.Tensor  # selected experts
    weights_TK: torch.Tensor  # mixing weights of the selected experts (fp32)

    def unselected_probs(self) -> torch.Tensor:
        """pi_TE with the selected entries zeroed: the weights of the missing experts."""
        return self.probs_TE.scatter(1, self.expert_idx_TK, 0.0)


def select_experts(logits_TE: torch.Tensor, probs_TE: torch.Tensor, expert_bias_E: torch.Tensor | None, top_k: int,
                   normalize_topk: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-K of ``probs + bias`` (bias only steers selection), weighted by the unbiased probs.

    With ``normalize_topk`` the weights pi_i / sum_{j in A} pi_j are computed as the softmax of the
    selected logits (the same value), so unselected logits get exactly zero gradient.
    """
    scores_TE = probs_TE.detach()
    if expert_bias_E is not None:
        scores_TE = scores_TE + expert_bias_E
    expert_idx_TK = scores_TE.topk(top_k, dim=-1).indices
    if normalize_topk:
        weights_TK = torch.softmax(logits_TE.gather(1, expert_idx_TK), dim=-1)
    else:
        weights_TK = probs_TE.gather(1, expert_idx_TK)
    return expert_idx_TK, weights_TK


class Router(nn.Module):
    """Linear router: logits z = W x, probabilities pi = softmax(z) over all experts (fp32)."""

    def __init__(self, d_model: int, num_experts: int, top_k: int, normalize_topk: bool,
                 use_bias_balancing: bool) -> None:
        super().__init__()
        self.top_k = top_k
        self.normalize_topk = normalize_topk
        self.use_bias_balancing = use_bias_balancing
        self.weight_ED = nn.Parameter(torch.empty(num_experts, d_model))
        self.register_buffer("expert_bias_E", torch.zeros(num_experts))
        nn.init.normal_(self.weight_ED, std=0.02)

    def forward(self, x_TD: torch.Tensor) -> RouterOutput:
        return self.route_with_weight(x_TD, self.weight_ED)

    def route_with_weight(self, x_TD: torch.Tensor, weight_ED: torch.Tensor) -> RouterOutput:
        logits_TE = x_TD.float() @ weight_ED.float().t()
        probs_TE = torch.softmax(logits_TE, dim=-1)
        bias_E = self.expert_bias_E if self.use_bias_balancing else None
        expert_idx_TK, weights_TK = select_experts(logits_TE, probs_TE, bias_E, self.top_k, self.normalize_topk)
        return RouterOutput(logits_TE, probs_TE, expert_idx_TK, weights_TK)

    @torch.no_grad()
    def update_bias(self, load_counts_E: torch.Tensor, rate: float) -> None:
        """DeepSeek-V3 aux-loss-free step: raise the bias of under-loaded experts, lower the others."""
        load_E = load_counts_E.float()
        self.expert_bias_E.add_(rate * torch.sign(load_E.mean() - load_E))
