"""Expert backends: how the routed SwiGLU experts are computed, chosen once when the layer is built.

Shape legend: T tokens, D model width, E experts, S = T*K expert-sorted routing slots.

Every backend implements the same two operations on a ``SwiGLUExperts`` module:
- ``raw(experts, x_TD, dispatch) -> raw_SD``: raw outputs E_{e(s)}(x_{t(s)}) of every slot;
- ``combine(experts, x_TD, dispatch, weight_S, want_sums) -> (y_TD, sums_ED | None)``: the
  weighted sum y_t = sum_{s: t(s)=t} weight_s raw_s, and with ``want_sums`` the per-expert sums of
  raw outputs (fp32, detached: the Default-MoE EMA statistics).
``use_grouped_mm`` tells the expert-group estimate which grouped products to use, and
``runs_triton(x)`` whether the Triton kernels run on this input (only ``fused``, on CUDA).
Adding a backend means adding a class here and an entry to ``BACKENDS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Optional

import torch

from kernels import grouped_swiglu, resolve_impl
from lit_moe.model.grouped import Dispatch, swiglu_grouped_mm, swiglu_loop

if TYPE_CHECKING:
    from lit_moe.model.experts import SwiGLUExperts


def scatter_weighted(raw_SD: torch.Tensor, weight_S: torch.Tensor, dispatch: Dispatch, num_tokens: int
                     ) -> torch.Tensor:
    """y_TD = sum over each token's slots of weight_s * raw_s."""
    return raw_SD.new_zeros(num_tokens, raw_SD.shape[-1]).index_add(
        0, dispatch.token_of_slot_S, raw_SD * weight_S.to(raw_SD.dtype).unsqueeze(-1))


def expert_sums(raw_SD: torch.Tensor, dispatch: Dispatch, num_experts: int) -> torch.Tensor:
    """sums_ED[e] = sum of the raw outputs of e's slots (fp32, detached)."""
    return raw_SD.new_zeros(num_experts, raw_SD.shape[-1], dtype=torch.float32).index_add(
        0, dispatch.expert_of_slot_S, raw_SD.detach().float())


class ExpertBackend(ABC):
    name: ClassVar[str]
    use_grouped_mm: ClassVar[bool] = False
    fuses_routing: ClassVar[bool] = False  # the router may use the Triton routing kernel where it runs

    @abstractmethod
    def raw(self, experts: "SwiGLUExperts", x_TD: torch.Tensor, dispatch: Dispatch) -> torch.Tensor:
        """Raw outputs of the expert-sorted slots, [S, D]."""

    def combine(self, experts: "SwiGLUExperts", x_TD: torch.Tensor, dispatch: Dispatch, weight_S: torch.Tensor,
                want_sums: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        raw_SD = self.raw(experts, x_TD, dispatch)
        y_TD = scatter_weighted(raw_SD, weight_S, dispatch, x_TD.shape[0])
        return y_TD, expert_sums(raw_SD, dispatch, experts.num_experts) if want_sums else None

    def runs_triton(self, x_TD: torch.Tensor) -> bool:
        return False


class Loop(ExpertBackend):
    """Per-expert matmuls over contiguous slices of the expert-sorted slots (reference; one host sync)."""

    name = "loop"

    def raw(self, experts, x_TD, dispatch):
        return swiglu_loop(x_TD[dispatch.token_of_slot_S], experts.w_gate_EDF, experts.w_up_EDF, experts.w_down_EFD,
                           dispatch.counts_E)


class GroupedMM(ExpertBackend):
    """One ``torch._grouped_mm`` per projection (no host sync)."""

    name = "grouped_mm"
    use_grouped_mm = True

    def raw(self, experts, x_TD, dispatch):
        return swiglu_grouped_mm(x_TD[dispatch.token_of_slot_S], experts.w_gate_EDF, experts.w_up_EDF,
                                 experts.w_down_EFD, dispatch.offsets_E)


class Fused(ExpertBackend):
    """``kernels.grouped_swiglu``: Triton kernels on CUDA (tokens gathered inside the GEMM tiles, the
    weighted scatter and the Default-MoE sums in the epilogue, fused routing); elsewhere its
    hand-written torch path with fp32 products through oneDNN (the fastest CPU backend)."""

    name = "fused"
    use_grouped_mm = True
    fuses_routing = True

    def raw(self, experts, x_TD, dispatch):
        return grouped_swiglu(x_TD, experts.w_gate_EDF, experts.w_up_EDF, experts.w_down_EFD, dispatch.offsets_E,
                              token_of_slot_S=dispatch.token_of_slot_S)

    def combine(self, experts, x_TD, dispatch, weight_S, want_sums):
        result = grouped_swiglu(x_TD, experts.w_gate_EDF, experts.w_up_EDF, experts.w_down_EFD, dispatch.offsets_E,
                                dispatch.token_of_slot_S, weight_S, return_sums=want_sums,
                                slot_order_S=dispatch.slot_order_S)
        return result if want_sums else (result, None)

    def runs_triton(self, x_TD):
        return resolve_impl("auto", x_TD) == "triton"


BACKENDS: dict[str, type[ExpertBackend]] = {cls.name: cls for cls in (Loop, GroupedMM, Fused)}
# Old names kept for one release: the config maps them (with a warning) to the new one.
BACKEND_ALIASES = {"triton": "fused"}
