"""Sort-based token dispatch and the grouped products the expert backends are built from.

Shape legend: T tokens, D model width, E experts, K experts per token, F expert hidden width,
S = T*K routing slots (one per (token, selected expert) pair), sorted by expert id.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Dispatch:
    """Routing slots sorted by expert: slot s processes token ``token_of_slot_S[s]`` on expert
    ``expert_of_slot_S[s]``; ``slot_order_S`` maps sorted slots back to flat (token, k) positions."""

    token_of_slot_S: torch.Tensor
    expert_of_slot_S: torch.Tensor
    slot_order_S: torch.Tensor
    counts_E: torch.Tensor
    offsets_E: torch.Tensor  # int32 cumulative end offsets (torch._grouped_mm convention)

    @classmethod
    def from_indices(cls, expert_idx_TK: torch.Tensor, num_experts: int) -> "Dispatch":
        top_k = expert_idx_TK.shape[1]
        flat_expert_S = expert_idx_TK.reshape(-1)
        slot_order_S = torch.argsort(flat_expert_S, stable=True)
        counts_E = torch.bincount(flat_expert_S, minlength=num_experts)
        return cls(
            token_of_slot_S=slot_order_S // top_k,
            expert_of_slot_S=flat_expert_S[slot_order_S],
            slot_order_S=slot_order_S,
            counts_E=counts_E,
            offsets_E=torch.cumsum(counts_E, 0).to(torch.int32),
        )


def swiglu_loop(x_SD, w_gate_EDF, w_up_EDF, w_down_EFD, counts_E) -> torch.Tensor:
    """Per-expert matmuls over contiguous slices of expert-sorted slots (one host sync)."""
    pieces = []
    for expert, x_chunk in enumerate(torch.split(x_SD, counts_E.tolist())):
        if x_chunk.shape[0] == 0:
            continue
        hidden = F.silu(x_chunk @ w_gate_EDF[expert]) * (x_chunk @ w_up_EDF[expert])
        pieces.append(hidden @ w_down_EFD[expert])
    if not pieces:
        return x_SD.new_zeros(x_SD.shape)
    return torch.cat(pieces)


def _pad_last(t: torch.Tensor, align: int) -> torch.Tensor:
    """Zero-pad the last dimension to a multiple of ``align``."""
    pad = -t.shape[-1] % align
    return F.pad(t, (0, pad)) if pad else t


def _grouped_mm_alignment(t: torch.Tensor) -> int:
    """``torch._grouped_mm`` needs 16-byte aligned strides: elements per 16 bytes."""
    return max(1, 16 // t.element_size())


def grouped_mm(a_SX: torch.Tensor, b_EXY: torch.Tensor, offsets_E: torch.Tensor) -> torch.Tensor:
    """``torch._grouped_mm`` (out[s] = a[s] @ b[group of s]) that zero-pads the inner and output
    dimensions to 16-byte multiples, which the op requires of its strides."""
    align = _grouped_mm_alignment(a_SX)
    width_x, width_y = a_SX.shape[-1], b_EXY.shape[-1]
    a_SX = _pad_last(a_SX, align)
    b_EXY = _pad_last(F.pad(b_EXY, (0, 0, 0, a_SX.shape[-1] - width_x)), align)
    out_SY = torch._grouped_mm(a_SX, b_EXY, offs=offsets_E)
    return out_SY[:, :width_y] if out_SY.shape[1] != width_y else out_SY


def grouped_matmul(a_SX: torch.Tensor, b_EXY: torch.Tensor, dispatch: Dispatch, use_grouped_mm: bool) -> torch.Tensor:
    """out[s] = a[s] @ b[expert_of_slot[s]] for expert-sorted slots (``torch._grouped_mm`` or a loop)."""
    if use_grouped_mm:
        return grouped_mm(a_SX, b_EXY, dispatch.offsets_E)
    pieces = [chunk @ b_EXY[e] for e, chunk in enumerate(torch.split(a_SX, dispatch.counts_E.tolist()))]
    return torch.cat(pieces) if pieces else a_SX.new_zeros(0, b_EXY.shape[-1])


def grouped_outer(a_SX: torch.Tensor, b_SY: torch.Tensor, dispatch: Dispatch, use_grouped_mm: bool) -> torch.Tensor:
    """out[e] = a[slots of e]^T @ b[slots of e], [E, X, Y] (the weight gradient of a grouped GEMM)."""
    width_x, width_y = a_SX.shape[-1], b_SY.shape[-1]
    if use_grouped_mm:
        align = _grouped_mm_alignment(a_SX)
        out_EXY = torch._grouped_mm(_pad_last(a_SX, align).t(), _pad_last(b_SY, align), offs=dispatch.offsets_E)
        return out_EXY[:, :width_x, :width_y]
    counts = dispatch.counts_E.tolist()
    return torch.stack([a.t() @ b for a, b in zip(torch.split(a_SX, counts), torch.split(b_SY, counts))])


def swiglu_grouped_mm(x_SD, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E) -> torch.Tensor:
    """One grouped GEMM per projection (``torch._grouped_mm``; no host sync)."""
    gate_SF = grouped_mm(x_SD, w_gate_EDF, offsets_E)
    up_SF = grouped_mm(x_SD, w_up_EDF, offsets_E)
    return grouped_mm(F.silu(gate_SF) * up_SF, w_down_EFD, offsets_E)
