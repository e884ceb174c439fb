"""Expert-group approximation of missing expert outputs (spec 1.4): scatter and gather kernels.

Shape legend: T tokens, D model width, E experts, K experts per token, S = T*K routing slots sorted
by expert, Q = E*E (j, i) cells.

Scatter (atomic adds): for each slot s (token t, expert i) and each other selected expert j of t,
    sums_QD[j*E + i] += raw_s,   counts_Q[j*E + i] += 1;   means_EED = sums / max(counts, 1)
i.e. mu[j, i] = mean of E_i(x') over this step's tokens x' routed to both j and i (0 if none).
Gradient: grad raw_s = sum over the other selected j of grad_sums[j*E + i].

Gather: estimate_t = (1/K) sum_{j in A(t)} sum_i u_{t,i} mu[j, i], with u_TE the unselected
probabilities (selected entries zeroed, so only i not in A(t) contribute). Over expert-sorted slots
this is a grouped GEMM u[t(s)] @ mu[e(s)] scattered back to tokens; its gradients go to u (hence to
the router probabilities) and to mu (hence, through the scatter, to the expert outputs).
"""

from __future__ import annotations

import torch

from kernels._triton import (
    TileSchedule,
    gemm_blocks,
    interpreting,
    launch_grouped_gemm,
    launch_grouped_wgrad,
    resolve_impl,
    tl,
    triton,
    wgrad_blocks,
)
from kernels.reference import expert_group_gather_reference, expert_group_scatter_reference


# ------------------------------------------------------------------------------ kernels
@triton.jit
def _scatter_fwd_kernel(raw_ptr, tok_ptr, expert_ptr, idx_ptr, sums_ptr, counts_ptr, S, D, E,
                        stride_rm, stride_rd,
                        TOP_K: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_s = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    row_mask = rows < S
    ds = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = ds < D
    tok = tl.load(tok_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    mine = tl.load(expert_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    raw = tl.load(raw_ptr + rows.to(tl.int64)[:, None] * stride_rm + ds[None, :] * stride_rd,
                  mask=row_mask[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
    for a in tl.static_range(TOP_K):
        other = tl.load(idx_ptr + tok * TOP_K + a, mask=row_mask, other=0).to(tl.int64)
        valid = row_mask & (other != mine)
        cell = other * E + mine
        tl.atomic_add(sums_ptr + cell[:, None] * D + ds[None, :], raw, mask=valid[:, None] & d_mask[None, :])
        if pid_d == 0:
            tl.atomic_add(counts_ptr + cell, tl.where(valid, 1.0, 0.0), mask=valid)


@triton.jit
def _scatter_bwd_kernel(grad_sums_ptr, tok_ptr, expert_ptr, idx_ptr, grad_raw_ptr, S, D, E,
                        TOP_K: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    pid_s = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    row_mask = rows < S
    ds = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = ds < D
    tok = tl.load(tok_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    mine = tl.load(expert_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    acc = tl.zeros((BLOCK_S, BLOCK_D), dtype=tl.float32)
    for a in tl.static_range(TOP_K):
        other = tl.load(idx_ptr + tok * TOP_K + a, mask=row_mask, other=0).to(tl.int64)
        valid = row_mask & (other != mine)
        cell = other * E + mine
        acc += tl.load(grad_sums_ptr + cell[:, None] * D + ds[None, :],
                       mask=valid[:, None] & d_mask[None, :], other=0.0)
    tl.store(grad_raw_ptr + rows.to(tl.int64)[:, None] * D + ds[None, :],
             acc.to(grad_raw_ptr.dtype.element_ty), mask=row_mask[:, None] & d_mask[None, :])


def _scatter_blocks() -> dict:
    return {"BLOCK_S": 64, "BLOCK_D": 128} if interpreting() else {"BLOCK_S": 32, "BLOCK_D": 128}


class _TritonScatter(torch.autograd.Function):
    @staticmethod
    def forward(ctx, raw_SD, token_of_slot_S, expert_of_slot_S, expert_idx_TK, num_experts):
        num_slots, d_model = raw_SD.shape
        top_k = expert_idx_TK.shape[1]
        sums_QD = torch.zeros(num_experts * num_experts, d_model, device=raw_SD.device, dtype=torch.float32)
        counts_Q = torch.zeros(num_experts * num_experts, device=raw_SD.device, dtype=torch.float32)
        token_of_slot_S, expert_of_slot_S = token_of_slot_S.contiguous(), expert_of_slot_S.contiguous()
        expert_idx_TK = expert_idx_TK.contiguous()
        blocks = _scatter_blocks()
        if num_slots:
            grid = (triton.cdiv(num_slots, blocks["BLOCK_S"]), triton.cdiv(d_model, blocks["BLOCK_D"]))
            _scatter_fwd_kernel[grid](raw_SD, token_of_slot_S, expert_of_slot_S, expert_idx_TK, sums_QD, counts_Q,
                                      num_slots, d_model, num_experts, raw_SD.stride(0), raw_SD.stride(1),
                                      TOP_K=top_k, **blocks)
        ctx.save_for_backward(token_of_slot_S, expert_of_slot_S, expert_idx_TK)
        ctx.num_experts, ctx.raw_dtype = num_experts, raw_SD.dtype
        ctx.mark_non_differentiable(counts_Q)
        return sums_QD, counts_Q

    @staticmethod
    def backward(ctx, grad_sums_QD, _grad_counts):
        token_of_slot_S, expert_of_slot_S, expert_idx_TK = ctx.saved_tensors
        num_slots, d_model = token_of_slot_S.shape[0], grad_sums_QD.shape[1]
        grad_raw_SD = torch.empty(num_slots, d_model, device=grad_sums_QD.device, dtype=ctx.raw_dtype)
        blocks = _scatter_blocks()
        if num_slots:
            grid = (triton.cdiv(num_slots, blocks["BLOCK_S"]), triton.cdiv(d_model, blocks["BLOCK_D"]))
            _scatter_bwd_kernel[grid](grad_sums_QD.float().contiguous(), token_of_slot_S, expert_of_slot_S,
                                      expert_idx_TK, grad_raw_SD, num_slots, d_model, ctx.num_experts,
                                      TOP_K=expert_idx_TK.shape[1], **blocks)
        return grad_raw_SD, None, None, None, None


class _TritonGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, unselected_TE, means_EED, token_of_slot_S, offsets_E, top_k):
        unselected_TE = unselected_TE.float().contiguous()
        means_EED = means_EED.float().contiguous()
        blocks = gemm_blocks(torch.float32)
        schedule = TileSchedule(offsets_E, token_of_slot_S.shape[0], blocks["BLOCK_M"])
        estimate_TD = torch.zeros(unselected_TE.shape[0], means_EED.shape[2], device=means_EED.device)
        if token_of_slot_S.shape[0]:
            launch_grouped_gemm(schedule, unselected_TE, means_EED, estimate_TD, row_a_S=token_of_slot_S,
                                row_c_S=token_of_slot_S, alpha=1.0 / top_k, blocks=blocks)
        ctx.schedule, ctx.top_k = schedule, top_k
        ctx.save_for_backward(unselected_TE, means_EED, token_of_slot_S)
        return estimate_TD

    @staticmethod
    def backward(ctx, grad_estimate_TD):
        unselected_TE, means_EED, token_of_slot_S = ctx.saved_tensors
        schedule, alpha = ctx.schedule, 1.0 / ctx.top_k
        grad_estimate_TD = grad_estimate_TD.float().contiguous()
        grad_unselected_TE = torch.zeros_like(unselected_TE)
        grad_means_EED = torch.empty_like(means_EED)
        if token_of_slot_S.shape[0]:
            launch_grouped_gemm(schedule, grad_estimate_TD, means_EED.transpose(1, 2), grad_unselected_TE,
                                row_a_S=token_of_slot_S, row_c_S=token_of_slot_S, alpha=alpha,
                                blocks=gemm_blocks(torch.float32))
        launch_grouped_wgrad(schedule, unselected_TE, grad_estimate_TD, grad_means_EED, row_a_S=token_of_slot_S,
                             row_b_S=token_of_slot_S, alpha=alpha, blocks=wgrad_blocks(torch.float32))
        return grad_unselected_TE, grad_means_EED, None, None, None


# --------------------------------------------------------------------------- dispatchers
def expert_group_scatter(raw_SD, token_of_slot_S, expert_of_slot_S, expert_idx_TK, num_experts, impl: str = "auto"):
    """Group means mu_EED[j, i] (fp32, differentiable w.r.t. raw_SD) and counts_EE from sorted slots."""
    if resolve_impl(impl, raw_SD) != "triton":
        return expert_group_scatter_reference(raw_SD, token_of_slot_S, expert_of_slot_S, expert_idx_TK, num_experts)
    sums_QD, counts_Q = _TritonScatter.apply(raw_SD, token_of_slot_S, expert_of_slot_S, expert_idx_TK, num_experts)
    means_QD = sums_QD / counts_Q.clamp(min=1).unsqueeze(-1)
    return means_QD.view(num_experts, num_experts, -1), counts_Q.view(num_experts, num_experts)


def expert_group_gather(unselected_TE, means_EED, token_of_slot_S, offsets_E, top_k: int, impl: str = "auto"):
    """Per-token estimate (1/K) sum_{j in A(t)} sum_i u_{t,i} mu[j, i] (fp32 [T, D])."""
    if resolve_impl(impl, means_EED) != "triton":
        return expert_group_gather_reference(unselected_TE, means_EED, token_of_slot_S, offsets_E, top_k)
    return _TritonGather.apply(unselected_TE, means_EED, token_of_slot_S, offsets_E, top_k)
