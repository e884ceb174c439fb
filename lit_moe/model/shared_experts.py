"""Always-active shared experts of an MoE layer (their output is added to the routed output).

Shape legend: T tokens (any leading shape), D model width, F shared hidden width.
"""

from __future__ import annotations

import torch
from torch import nn

from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.layers import SwiGLU


class SigmoidGatedSharedExpert(SwiGLU):
    """Qwen2-MoE's shared expert: sigmoid(w^T x) * down(silu(gate(x)) * up(x)), with a learned
    per-token scalar gate ``output_gate`` (Linear D -> 1, no bias)."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__(d_model, d_hidden)
        self.output_gate = nn.Linear(d_model, 1, bias=False)

    def forward(self, x_TD: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.output_gate(x_TD)) * super().forward(x_TD)


def build_shared_experts(config: MoETransformerConfig) -> nn.Module | None:
    """The shared expert MLP of one MoE layer, or ``None``: ``num_shared_experts`` experts of width
    ``d_expert`` fused into one SwiGLU (or one of width ``d_shared``), optionally sigmoid-gated."""
    if config.shared_hidden == 0:
        return None
    if config.shared_expert_gate:
        return SigmoidGatedSharedExpert(config.d_model, config.shared_hidden)
    return SwiGLU(config.d_model, config.shared_hidden)
