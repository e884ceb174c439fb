"""The router (gate): logits z = W x, scores pi, top-K selection, optional aux-loss-free biases.

Shape legend: T tokens, D model width, E experts, K experts per token.

With the ``fused`` expert backend and CUDA inputs, softmax, top-K and the Default-MoE
default term run in one Triton kernel (``kernels.fused_routing``); elsewhere the same values come
from torch ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from kernels import fused_routing
from lit_moe.model.backends import ExpertBackend
from lit_moe.model.scoring import SCORE_FUNCTIONS


@dataclass
class RouterOutput:
    logits_TE: torch.Tensor
    probs_TE: torch.Tensor  # scores pi over all E experts (fp32; softmax: a distribution)
    expert_idx_TK: torch.Tensor  # selected experts
    weights_TK: torch.Tensor  # mixing weights of the selected experts (fp32)
    default_TD: Optional[torch.Tensor] = None  # sum_{i not in A} pi_i Ehat_i, when computed by the fused kernel

    def unselected_probs(self) -> torch.Tensor:
        """pi_TE with the selected entries zeroed: the weights of the missing experts."""
        return self.probs_TE.scatter(1, self.expert_idx_TK, 0.0)

    def selected_probs(self) -> torch.Tensor:
        """pi of the selected experts, [T, K] (equals ``weights_TK`` unless normalised)."""
        return self.probs_TE.gather(1, self.expert_idx_TK)


class Router(nn.Module):
    """Linear router with a score function chosen at construction.

    Args:
        d_model: Input width D.
        num_experts: Experts E.
        top_k: Experts selected per token K.
        normalize_topk: Renormalise the K selected scores to sum to 1.
        use_bias_balancing: Steer the selection with aux-loss-free balancing biases.
        score_function: A key of ``lit_moe.model.scoring.SCORE_FUNCTIONS`` (``softmax``, ``sigmoid``).
        backend: The layer's expert backend: if it fuses routing (``fused``), the Triton routing
            kernel runs wherever the backend runs Triton (CUDA) and the scores are softmax.
    """

    def __init__(self, d_model: int, num_experts: int, top_k: int, normalize_topk: bool,
                 use_bias_balancing: bool, score_function: str = "softmax",
                 backend: Optional[ExpertBackend] = None) -> None:
        super().__init__()
        self.top_k = top_k
        self.normalize_topk = normalize_topk
        self.use_bias_balancing = use_bias_balancing
        self.score_function = SCORE_FUNCTIONS[score_function]()
        fusable = backend is not None and backend.fuses_routing and self.score_function.fusable
        self.backend = backend if fusable else None
        self.weight_ED = nn.Parameter(torch.empty(num_experts, d_model))
        self.register_buffer("expert_bias_E", torch.zeros(num_experts))
        nn.init.normal_(self.weight_ED, std=0.02)

    def forward(self, x_TD: torch.Tensor, default_vectors_ED: Optional[torch.Tensor] = None) -> RouterOutput:
        """Route tokens; with ``default_vectors_ED`` the fused kernel (where it runs) also returns the
        Default-MoE term in ``RouterOutput.default_TD``."""
        logits_TE = x_TD.float() @ self.weight_ED.float().t()
        bias_E = self.expert_bias_E if self.use_bias_balancing else None
        if self.backend is not None and self.backend.runs_triton(x_TD):
            probs_TE, idx_TK, weights_TK, default_TD = fused_routing(
                logits_TE, self.top_k, self.normalize_topk, bias_E, default_vectors_ED)
            return RouterOutput(logits_TE, probs_TE, idx_TK, weights_TK, default_TD)
        probs_TE = self.score_function.scores(logits_TE)
        idx_TK, weights_TK = self.score_function.select(logits_TE, probs_TE, bias_E, self.top_k, self.normalize_topk)
        return RouterOutput(logits_TE, probs_TE, idx_TK, weights_TK)

    def scores(self, x_TD: torch.Tensor) -> torch.Tensor:
        """pi_TE of every expert (differentiable in the router weight)."""
        return self.score_function.scores(x_TD.float() @ self.weight_ED.float().t())

    @torch.no_grad()
    def update_bias(self, load_counts_E: torch.Tensor, rate: float) -> None:
        """DeepSeek-V3 aux-loss-free step: raise the bias of under-loaded experts, lower the others."""
        load_E = load_counts_E.float()
        self.expert_bias_E.add_(rate * torch.sign(load_E.mean() - load_E))
