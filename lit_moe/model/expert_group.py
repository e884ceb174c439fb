"""Expert-group approximation of the missing expert outputs (spec §1.4): the CPU/torch production path
(the oracle of mu is ``kernels.reference.expert_group_means``).

Shape legend: T tokens, D model width, E experts, K experts per token, S = T*K expert-sorted
routing slots; I, J index experts where a tensor is laid out [i, j] rather than [j, i].

For a pair of experts (j, i), mu[j, i] is the mean output of expert i over this step's tokens routed
to both j and i (0 for empty cells). A token t estimates a missing expert i as
Ehat_i(t) = (1/K) sum_{j in A(t)} mu[j, i], and the layer output is

    y_t = sum_{i in A(t)} w_ti E_i(t) + sum_{i not in A(t)} pi_ti Ehat_i(t)        (not detached)

Slot s (token t, expert j) carries the routed term w_s E_j(t) and the estimate piece
(1/K) sum_i u_ti mu[j, i] (u = pi with the selected entries zeroed), so both are summed into the
tokens by one scatter. With partners_SE, the multi-hot of the other experts of a slot's token, the
sums behind mu are one grouped GEMM over expert i's slots (partners^T @ outputs), and so are their
gradients. ``combine_with_group_estimate`` runs all of it as a single autograd node with a
hand-written backward: a few grouped GEMMs instead of the chain of small autograd ops (index_add
backwards, accumulations of [S, D] gradients) that made the expert-group router cost +7-15% of a
CPU training step.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from lit_moe.model.grouped import Dispatch, grouped_matmul, grouped_outer


def slot_partners(dispatch: Dispatch, expert_idx_TK: torch.Tensor, num_experts: int,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """partners_SE[s, j] = 1 where j is another expert of slot s's token (multi-hot, K-1 ones a row)."""
    selected_TE = torch.zeros(expert_idx_TK.shape[0], num_experts, dtype=dtype, device=expert_idx_TK.device)
    selected_TE.scatter_(1, expert_idx_TK, 1.0)
    partners_SE = selected_TE.index_select(0, dispatch.token_of_slot_S)
    return partners_SE.scatter_(1, dispatch.expert_of_slot_S.unsqueeze(1), 0.0)


@torch.no_grad()
def group_means_from_slots(raw_SD: torch.Tensor, partners_SE: torch.Tensor, dispatch: Dispatch,
                           use_grouped_mm: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(means_IJD, counts_IJ) in fp32 from expert-sorted slot outputs, indexed [i, j] = mu[j, i]: expert
    i's slots sum their outputs into row j for every partner j (one grouped GEMM), no gradient."""
    num_experts = partners_SE.shape[1]
    sums_IJD = grouped_outer(partners_SE, raw_SD.float(), dispatch, use_grouped_mm)
    counts_IJ = partners_SE.new_zeros(num_experts, num_experts).index_add_(0, dispatch.expert_of_slot_S, partners_SE)
    return sums_IJD / counts_IJ.clamp(min=1).unsqueeze(-1), counts_IJ


class _CombineWithGroupEstimate(torch.autograd.Function):
    """y_TD = scatter_t( w_s raw_s + (1/K) u_t(s) @ mu[expert(s)] ), mu built from raw (see module doc)."""

    @staticmethod
    def forward(ctx, raw_SD, weight_S, unselected_TE, dispatch, partners_SE, top_k, use_grouped_mm):
        means_IJD, counts_IJ = group_means_from_slots(raw_SD, partners_SE, dispatch, use_grouped_mm)
        # slot s of expert j reads mu[j, i] over the missing experts i: [j, i, D], pre-scaled by 1/K
        means_JID = means_IJD.transpose(0, 1).mul(1.0 / top_k).contiguous()
        unselected_SE = unselected_TE.index_select(0, dispatch.token_of_slot_S)
        estimate_SD = grouped_matmul(unselected_SE, means_JID, dispatch, use_grouped_mm)
        # in place: every [S, D] temporary is fresh memory, and first touches dominate on CPU
        contribution_SD = estimate_SD.to(raw_SD.dtype).addcmul_(raw_SD, weight_S.to(raw_SD.dtype).unsqueeze(-1))
        y_TD = raw_SD.new_zeros(unselected_TE.shape[0], raw_SD.shape[-1]).index_add_(
            0, dispatch.token_of_slot_S, contribution_SD)
        ctx.save_for_backward(raw_SD, weight_S, unselected_SE, partners_SE, means_JID, counts_IJ)
        ctx.dispatch = dispatch  # integer index tensors, never modified in place
        ctx.shapes = (unselected_TE.shape, unselected_TE.dtype, top_k, use_grouped_mm)
        return y_TD

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y_TD):
        raw_SD, weight_S, unselected_SE, partners_SE, means_JID, counts_IJ = ctx.saved_tensors
        unselected_shape, unselected_dtype, top_k, use_grouped_mm = ctx.shapes
        dispatch = ctx.dispatch
        token_of_slot_S = dispatch.token_of_slot_S
        grad_SD = grad_y_TD.index_select(0, token_of_slot_S)
        grad_float_SD = grad_SD.float()
        grad_weight_S = torch.bmm(grad_SD.unsqueeze(1), raw_SD.unsqueeze(2)).view(-1).to(weight_S.dtype)
        # unselected probabilities: d/du_t = sum over the token's slots of grad_s @ mu[expert(s)]^T
        grad_unselected_SE = grouped_matmul(grad_float_SD, means_JID.transpose(1, 2), dispatch, use_grouped_mm)
        grad_unselected_TE = grad_float_SD.new_zeros(unselected_shape).index_add_(
            0, token_of_slot_S, grad_unselected_SE).to(unselected_dtype)
        # expert outputs: the routed term, plus each cell mean mu[j, i] the slot (of expert i) fed
        grad_sums_IJD = grouped_outer(unselected_SE, grad_float_SD, dispatch, use_grouped_mm).transpose(0, 1)
        grad_sums_IJD = (grad_sums_IJD / (counts_IJ.clamp(min=1) * top_k).unsqueeze(-1)).contiguous()
        grad_raw_SD = grouped_matmul(partners_SE, grad_sums_IJD, dispatch, use_grouped_mm).to(grad_SD.dtype)
        grad_raw_SD.addcmul_(grad_SD, weight_S.to(grad_SD.dtype).unsqueeze(-1))
        return grad_raw_SD, grad_weight_S, grad_unselected_TE, None, None, None, None


def combine_with_group_estimate(raw_SD: torch.Tensor, weight_S: torch.Tensor, unselected_TE: torch.Tensor,
                                dispatch: Dispatch, expert_idx_TK: torch.Tensor, num_experts: int,
                                use_grouped_mm: bool) -> torch.Tensor:
    """Token outputs sum_{i in A} w_i E_i(x) + sum_{i not in A} pi_i Ehat_i(x) of the expert-group
    router, differentiable in the expert outputs ``raw_SD``, the slot weights ``weight_S`` (expert-
    sorted) and the unselected probabilities ``unselected_TE``. Output dtype: that of ``raw_SD``."""
    partners_SE = slot_partners(dispatch, expert_idx_TK, num_experts)
    return _CombineWithGroupEstimate.apply(raw_SD, weight_S, unselected_TE, dispatch, partners_SE,
                                           expert_idx_TK.shape[1], use_grouped_mm)
