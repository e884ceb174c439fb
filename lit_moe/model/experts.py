"""Stacked SwiGLU experts with an expert backend chosen at construction.

Shape legend: T tokens, D model width, E experts, F expert hidden width, S expert-sorted slots.

Expert weights are stacked 3-D parameters (``w_gate_EDF``, ``w_up_EDF``, ``w_down_EFD``) so that
grouped GEMMs and Triton kernels can consume them directly; how they are computed is the backend's
business (``lit_moe.model.backends``).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lit_moe.model.backends import BACKENDS, ExpertBackend
from lit_moe.model.grouped import Dispatch

__all__ = ["Dispatch", "SwiGLUExperts", "scaled_init_std"]


class SwiGLUExperts(nn.Module):
    """E independent SwiGLU MLPs with stacked weights.

    Args:
        num_experts: E.
        d_model: D.
        d_hidden: F, each expert's hidden width.
        backend: A key of ``lit_moe.model.backends.BACKENDS`` (``loop``, ``grouped_mm``, ``fused``).
    """

    def __init__(self, num_experts: int, d_model: int, d_hidden: int, backend: str = "loop") -> None:
        super().__init__()
        self.backend: ExpertBackend = BACKENDS[backend]()
        self.w_gate_EDF = nn.Parameter(torch.empty(num_experts, d_model, d_hidden))
        self.w_up_EDF = nn.Parameter(torch.empty(num_experts, d_model, d_hidden))
        self.w_down_EFD = nn.Parameter(torch.empty(num_experts, d_hidden, d_model))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        for weight in (self.w_gate_EDF, self.w_up_EDF, self.w_down_EFD):
            nn.init.normal_(weight, std=std)

    @property
    def num_experts(self) -> int:
        return self.w_gate_EDF.shape[0]

    def raw(self, x_TD: torch.Tensor, dispatch: Dispatch) -> torch.Tensor:
        """Raw expert outputs of the expert-sorted slots of tokens ``x_TD``, [S, D]."""
        return self.backend.raw(self, x_TD, dispatch)

    def combine(self, x_TD: torch.Tensor, dispatch: Dispatch, weight_S: torch.Tensor,
                want_sums: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(y_TD = routing-weighted sum of the slots' outputs, per-expert output sums or None)."""
        return self.backend.combine(self, x_TD, dispatch, weight_S, want_sums)

    def forward_expert(self, expert: int, x_TD: torch.Tensor) -> torch.Tensor:
        """Output of one expert on every token (the dense reference, analyses)."""
        hidden = F.silu(x_TD @ self.w_gate_EDF[expert]) * (x_TD @ self.w_up_EDF[expert])
        return hidden @ self.w_down_EFD[expert]

    def extra_repr(self) -> str:
        e, d, f = self.w_gate_EDF.shape
        return f"num_experts={e}, d_model={d}, d_hidden={f}, backend={self.backend.name}"


def scaled_init_std(base_std: float, n_layers: int) -> float:
    """GPT-2 style down-projection scaling for residual branches."""
    return base_std / math.sqrt(2 * n_layers)
