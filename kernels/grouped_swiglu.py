"""Grouped SwiGLU expert MLP over expert-sorted routing slots, forward and backward.

Shape legend: T tokens, D model width, E experts, F expert hidden width, S routing slots sorted by
expert (``offsets_E``: int32 cumulative end offsets, the torch._grouped_mm convention).

    raw_s = (silu(x_{t(s)} W_gate[e(s)]) * (x_{t(s)} W_up[e(s)])) W_down[e(s)]
    y_t   = sum_{s: t(s)=t} weight_s raw_s                         (scatter mode)

Modes of ``grouped_swiglu``:
- ``token_of_slot_S`` given: rows of ``x`` are tokens, gathered per slot inside the GEMM tiles;
  otherwise rows of ``x`` are already the slots.
- ``weight_S`` given (needs ``token_of_slot_S``): returns y_TD, the routing-weighted sum scattered
  back to tokens (no [S, D] output is materialised); otherwise returns raw_SD.
- ``return_sums``: also returns sums_ED[e] = sum of raw_s over e's slots (fp32, detached): the
  Default-MoE EMA statistics, fused into the down-projection epilogue.

Three implementations with one autograd contract (grads for x, the three weights and weight_S):
- ``kernels.reference.grouped_swiglu_reference``: plain torch ops, autograd by torch (the test oracle);
- ``_TorchGroupedSwiGLU``: the CPU production path: per-expert products through ``kernels.cpu_gemm``
  (oneDNN for fp32, about twice torch.mm's MKL rate on AMD CPUs; rows zero-padded to bucketed
  counts), a hand-written backward that saves only the gate/up pre-activations per expert (small
  allocations that the allocator reuses: no page-fault storm from fresh [S, F] buffers);
- ``_TritonGroupedSwiGLU``: Triton kernels (one fused gate/up kernel with the SwiGLU epilogue, the
  grouped GEMMs of ``kernels._triton`` for the rest, atomic scatter to tokens).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from kernels._triton import (
    TileSchedule,
    _dot,
    dot_flags,
    gemm_blocks,
    launch_grouped_gemm,
    launch_grouped_wgrad,
    resolve_impl,
    tl,
    triton,
    wgrad_blocks,
)
from kernels.cpu_gemm import CpuGemm
from kernels.reference import grouped_swiglu_reference


def _check(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S, weight_S) -> None:
    if weight_S is not None and token_of_slot_S is None:
        raise ValueError("grouped_swiglu: weight_S (scatter to tokens) needs token_of_slot_S")
    num_experts, d_model, d_hidden = w_gate_EDF.shape
    if w_up_EDF.shape != w_gate_EDF.shape or w_down_EFD.shape != (num_experts, d_hidden, d_model):
        raise ValueError(f"grouped_swiglu: weight shapes {tuple(w_gate_EDF.shape)}, {tuple(w_up_EDF.shape)}, "
                         f"{tuple(w_down_EFD.shape)} are not [E, D, F], [E, D, F], [E, F, D]")
    if x.shape[-1] != d_model or offsets_E.shape != (num_experts,):
        raise ValueError(f"grouped_swiglu: x {tuple(x.shape)} / offsets {tuple(offsets_E.shape)} do not match "
                         f"E={num_experts}, D={d_model}")


# ------------------------------------------------------------------ CPU production path
def row_dots(a_NF: torch.Tensor, b_NF: torch.Tensor, max_temporary_bytes: int = 8 << 20) -> torch.Tensor:
    """Row-wise dot products <a_n, b_n> -> [N].

    ``torch.linalg.vecdot`` is 2-4x faster on CPU than the same dots as a batch of 1xF @ Fx1 ``bmm``
    products (n=512..4096, F=256..1024), but it materialises the [N, F] product: rows are taken in
    chunks whose temporary stays below ``max_temporary_bytes``, well under glibc's 32 MiB mmap
    threshold (a fresh mapped temporary pays its page faults on every call: 3x slower than bmm).
    """
    rows = max(1, max_temporary_bytes // max(1, a_NF.shape[-1] * a_NF.element_size()))
    if a_NF.shape[0] <= rows:
        return torch.linalg.vecdot(a_NF, b_NF)
    return torch.cat([torch.linalg.vecdot(a_NF[start:start + rows], b_NF[start:start + rows])
                      for start in range(0, a_NF.shape[0], rows)])


def _expert_rows(src_RD: torch.Tensor, lo: int, hi: int, tokens: Optional[torch.Tensor],
                 padded_rows: int) -> torch.Tensor:
    """Rows of slots lo..hi, zero-padded to ``padded_rows``: gathered from token rows (``tokens``: the
    slots' tokens) or, with ``tokens=None``, a slice of slot rows."""
    num_rows = hi - lo
    if padded_rows == num_rows:
        return src_RD.index_select(0, tokens) if tokens is not None else src_RD[lo:hi]
    rows_ND = src_RD.new_empty(padded_rows, src_RD.shape[1])
    if tokens is not None:
        torch.index_select(src_RD, 0, tokens, out=rows_ND[:num_rows])
    else:
        rows_ND[:num_rows] = src_RD[lo:hi]
    rows_ND[num_rows:].zero_()
    return rows_ND


class _TorchGroupedSwiGLU(torch.autograd.Function):
    """Per-expert products through ``kernels.cpu_gemm`` (oneDNN for fp32 CPU where it pays; each expert's
    rows are then zero-padded to a bucketed count, and only the first ``hi - lo`` rows of any result
    are used: the zero rows add nothing to the weight gradients)."""

    @staticmethod
    def forward(ctx, x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S, weight_S, return_sums):
        bounds = [0] + offsets_E.tolist()
        num_experts, d_model, d_hidden = w_gate_EDF.shape
        gemm = CpuGemm.for_operands(x, w_gate_EDF, bounds[-1] // max(1, num_experts) * d_model * d_hidden)
        scatter = weight_S is not None
        out = x.new_zeros(x.shape) if scatter else x.new_empty(bounds[-1], d_model)
        sums_ED = x.new_zeros(num_experts, d_model, dtype=torch.float32) if return_sums else None
        gates, ups = [], []
        for expert in range(num_experts):
            lo, hi = bounds[expert], bounds[expert + 1]
            if lo == hi:
                gates.append(None)
                ups.append(None)
                continue
            tokens = token_of_slot_S[lo:hi] if token_of_slot_S is not None else None
            x_chunk = _expert_rows(x, lo, hi, tokens, gemm.rows(hi - lo))
            gate = gemm.mm(x_chunk, w_gate_EDF[expert])
            up = gemm.mm(x_chunk, w_up_EDF[expert])
            hidden = F.silu(gate).mul_(up)
            if scatter:
                raw = gemm.mm(hidden, w_down_EFD[expert])[: hi - lo]
            else:
                raw = out[lo:hi]
                gemm.mm_into(raw, hidden, w_down_EFD[expert])
            if return_sums:
                sums_ED[expert] = raw.sum(0, dtype=torch.float32)
            if scatter:
                out.index_add_(0, tokens, raw.mul_(weight_S[lo:hi, None].to(raw.dtype)))
            gates.append(gate)
            ups.append(up)
        ctx.bounds, ctx.gates, ctx.ups, ctx.scatter, ctx.gemm = bounds, gates, ups, scatter, gemm
        ctx.save_for_backward(x, w_gate_EDF, w_up_EDF, w_down_EFD, token_of_slot_S, weight_S)
        ctx.mark_non_differentiable(*([sums_ED] if return_sums else []))
        return out, sums_ED

    @staticmethod
    def backward(ctx, grad_out, _grad_sums):
        x, w_gate_EDF, w_up_EDF, w_down_EFD, token_of_slot_S, weight_S = ctx.saved_tensors
        bounds, scatter, gemm = ctx.bounds, ctx.scatter, ctx.gemm
        grad_x = torch.zeros_like(x)
        # every expert with slots writes its weight gradients whole: only empty ones are zeroed
        grad_gate_EDF = torch.empty_like(w_gate_EDF)
        grad_up_EDF = torch.empty_like(w_up_EDF)
        grad_down_EFD = torch.empty_like(w_down_EFD)
        grad_weight_S = torch.empty_like(weight_S) if scatter else None
        for expert in range(w_gate_EDF.shape[0]):
            lo, hi = bounds[expert], bounds[expert + 1]
            if lo == hi:
                for grad in (grad_gate_EDF, grad_up_EDF, grad_down_EFD):
                    grad[expert].zero_()
                continue
            num_rows = hi - lo
            gate, up = ctx.gates[expert], ctx.ups[expert]
            padded_rows = gate.shape[0]
            tokens = token_of_slot_S[lo:hi] if token_of_slot_S is not None else None
            x_chunk = _expert_rows(x, lo, hi, tokens, padded_rows)
            # scatter mode: grad_out holds tokens; otherwise it holds the raw slot outputs
            grad_raw = _expert_rows(grad_out, lo, hi, tokens if scatter else None, padded_rows)
            silu = F.silu(gate)
            hidden = silu * up
            grad_hidden = gemm.mm(grad_raw, w_down_EFD[expert].t())
            if scatter:
                weight = weight_S[lo:hi, None].to(grad_raw.dtype)
                grad_weight_S[lo:hi] = row_dots(grad_hidden[:num_rows], hidden[:num_rows])
                grad_hidden[:num_rows].mul_(weight)
                grad_raw[:num_rows].mul_(weight)
            gemm.mm_into(grad_down_EFD[expert], hidden.t(), grad_raw)
            grad_up = grad_hidden * silu
            # one fused pass for d silu(g)/dg = sig * (1 + g * (1 - sig))
            grad_gate = torch.ops.aten.silu_backward(grad_hidden.mul_(up), gate)
            x_chunk_t = gemm.lhs(x_chunk.t())  # laid out once for both weight gradients
            gemm.mm_into(grad_gate_EDF[expert], x_chunk_t, grad_gate)
            gemm.mm_into(grad_up_EDF[expert], x_chunk_t, grad_up)
            grad_x_chunk = gemm.mm_add(grad_gate, w_gate_EDF[expert].t(), grad_up, w_up_EDF[expert].t())[:num_rows]
            if tokens is not None:
                grad_x.index_add_(0, tokens, grad_x_chunk)
            else:
                grad_x[lo:hi] = grad_x_chunk
        ctx.gates = ctx.ups = None
        return grad_x, grad_gate_EDF, grad_up_EDF, grad_down_EFD, None, None, grad_weight_S, None


# ------------------------------------------------------------------------ Triton path
@triton.jit
def _swiglu_up_kernel(
    x_ptr, row_x_ptr, wg_ptr, wu_ptr, g_ptr, u_ptr, h_ptr,
    tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    D, Fh,
    stride_xm, stride_xd, stride_we, stride_wd, stride_wf, stride_hm, stride_hf,
    GATHER: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr, IEEE: tl.constexpr,
):
    """g = x W_gate, u = x W_up (one pass over the gathered x tile), h = silu(g) * u."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    start = tl.load(tile_start_ptr + pid_m)
    end = tl.load(tile_end_ptr + pid_m)
    if start >= end:
        return
    expert = tl.load(tile_expert_ptr + pid_m).to(tl.int64)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < end
    if GATHER:
        src = tl.load(row_x_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    else:
        src = rows.to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < Fh
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < D
        a = tl.load(x_ptr + src[:, None] * stride_xm + ks[None, :] * stride_xd,
                    mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        w_off = expert * stride_we + ks[:, None] * stride_wd + cols[None, :] * stride_wf
        w_mask = k_mask[:, None] & col_mask[None, :]
        acc_g = _dot(a, tl.load(wg_ptr + w_off, mask=w_mask, other=0.0), acc_g, DOT_FP32, IEEE)
        acc_u = _dot(a, tl.load(wu_ptr + w_off, mask=w_mask, other=0.0), acc_u, DOT_FP32, IEEE)
    h = acc_g * tl.sigmoid(acc_g) * acc_u
    mask = row_mask[:, None] & col_mask[None, :]
    off = rows.to(tl.int64)[:, None] * stride_hm + cols[None, :] * stride_hf
    tl.store(g_ptr + off, acc_g.to(g_ptr.dtype.element_ty), mask=mask)
    tl.store(u_ptr + off, acc_u.to(u_ptr.dtype.element_ty), mask=mask)
    tl.store(h_ptr + off, h.to(h_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_down_bwd_kernel(
    dy_ptr, row_dy_ptr, wd_ptr, g_ptr, u_ptr, weight_ptr, dweight_ptr, dg_ptr, du_ptr, h_ptr,
    tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    D, Fh,
    stride_ym, stride_yd, stride_we, stride_wf, stride_wd, stride_hm, stride_hf,
    SCATTER: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr, IEEE: tl.constexpr,
):
    """grad_h = (w_s dy_{t(s)}) W_down^T; SwiGLU backward to grad_g, grad_u; grad_w_s = <dy, raw_s>.

    g and u are overwritten in place by grad_g and grad_u (each program owns its tile); h is written
    for the W_down gradient.
    """
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    start = tl.load(tile_start_ptr + pid_m)
    end = tl.load(tile_end_ptr + pid_m)
    if start >= end:
        return
    expert = tl.load(tile_expert_ptr + pid_m).to(tl.int64)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < end
    if SCATTER:
        src = tl.load(row_dy_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    else:
        src = rows.to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < Fh
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, D, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < D
        a = tl.load(dy_ptr + src[:, None] * stride_ym + ks[None, :] * stride_yd,
                    mask=row_mask[:, None] & k_mask[None, :], other=0.0)
        b = tl.load(wd_ptr + expert * stride_we + cols[None, :] * stride_wf + ks[:, None] * stride_wd,
                    mask=k_mask[:, None] & col_mask[None, :], other=0.0)
        acc = _dot(a, b, acc, DOT_FP32, IEEE)
    mask = row_mask[:, None] & col_mask[None, :]
    off = rows.to(tl.int64)[:, None] * stride_hm + cols[None, :] * stride_hf
    g = tl.load(g_ptr + off, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + off, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    silu = g * sig
    h = silu * u
    if SCATTER:
        tl.atomic_add(dweight_ptr + rows, tl.sum(tl.where(mask, acc * h, 0.0), axis=1), mask=row_mask)
        acc = acc * tl.load(weight_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)[:, None]
    grad_u = acc * silu
    grad_g = acc * u * sig * (1.0 + g * (1.0 - sig))
    tl.store(dg_ptr + off, grad_g.to(dg_ptr.dtype.element_ty), mask=mask)
    tl.store(du_ptr + off, grad_u.to(du_ptr.dtype.element_ty), mask=mask)
    tl.store(h_ptr + off, h.to(h_ptr.dtype.element_ty), mask=mask)


class _TritonGroupedSwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S, weight_S, return_sums,
                slot_order_S=None):
        num_experts, d_model, d_hidden = w_gate_EDF.shape
        num_slots = token_of_slot_S.shape[0] if token_of_slot_S is not None else x.shape[0]
        blocks = gemm_blocks(x.dtype)
        schedule = TileSchedule(offsets_E, num_slots, blocks["BLOCK_M"])
        x = x.contiguous()
        gate_SF = x.new_empty(num_slots, d_hidden)
        up_SF = torch.empty_like(gate_SF)
        hidden_SF = torch.empty_like(gate_SF)
        if num_slots:
            grid = (schedule.num_tiles, triton.cdiv(d_hidden, blocks["BLOCK_N"]))
            _swiglu_up_kernel[grid](
                x, token_of_slot_S if token_of_slot_S is not None else schedule.start,
                w_gate_EDF, w_up_EDF, gate_SF, up_SF, hidden_SF,
                schedule.expert, schedule.start, schedule.end, d_model, d_hidden,
                x.stride(0), x.stride(1), w_gate_EDF.stride(0), w_gate_EDF.stride(1), w_gate_EDF.stride(2),
                gate_SF.stride(0), gate_SF.stride(1),
                GATHER=token_of_slot_S is not None, **dot_flags(x.dtype), **blocks)
        sums_ED = x.new_zeros(num_experts, d_model, dtype=torch.float32) if return_sums else None
        scatter = weight_S is not None
        if scatter and slot_order_S is not None:
            # each slot owns row slot_order(s) = t*K + k of a token-major buffer: plain stores, then a
            # deterministic sum over K (no atomics)
            out_TKD = x.new_empty(num_slots, d_model)
            launch_grouped_gemm(schedule, hidden_SF, w_down_EFD, out_TKD, scale_S=weight_S, row_c_S=slot_order_S,
                                sums_EN=sums_ED, atomic=False, blocks=blocks)
            out = out_TKD.view(x.shape[0], -1, d_model).sum(1, dtype=torch.float32).to(x.dtype)
        elif scatter:
            out32 = x.new_zeros(x.shape[0], d_model, dtype=torch.float32)
            launch_grouped_gemm(schedule, hidden_SF, w_down_EFD, out32, scale_S=weight_S,
                                row_c_S=token_of_slot_S, sums_EN=sums_ED, blocks=blocks)
            out = out32.to(x.dtype)
        else:
            out = x.new_empty(num_slots, d_model)
            launch_grouped_gemm(schedule, hidden_SF, w_down_EFD, out, sums_EN=sums_ED, blocks=blocks)
        del hidden_SF
        ctx.schedule, ctx.scatter = schedule, scatter
        ctx.save_for_backward(x, w_gate_EDF, w_up_EDF, w_down_EFD, token_of_slot_S, weight_S, gate_SF, up_SF,
                              slot_order_S)
        ctx.mark_non_differentiable(*([sums_ED] if return_sums else []))
        return out, sums_ED

    @staticmethod
    def backward(ctx, grad_out, _grad_sums):
        x, w_gate_EDF, w_up_EDF, w_down_EFD, token_of_slot_S, weight_S, gate_SF, up_SF, slot_order_S = \
            ctx.saved_tensors
        schedule, scatter = ctx.schedule, ctx.scatter
        num_experts, d_model, d_hidden = w_gate_EDF.shape
        num_slots = gate_SF.shape[0]
        blocks, wblocks = gemm_blocks(x.dtype), wgrad_blocks(x.dtype)
        grad_out = grad_out.contiguous().to(x.dtype)
        # Backward reuses the saved gate/up buffers for their gradients (a clone keeps double backward
        # out of reach, which this Function does not support anyway).
        grad_gate_SF, grad_up_SF = gate_SF, up_SF
        hidden_SF = torch.empty_like(gate_SF)
        grad_weight_S = torch.zeros(num_slots, device=x.device, dtype=torch.float32) if scatter else None
        # W_down^T and W_gate^T / W_up^T as contiguous copies (E*D*F each, small next to the [S, F]
        # activations): the backward GEMMs then read their B tiles along the contiguous axis.
        w_down_DF = w_down_EFD.transpose(1, 2).contiguous()
        if num_slots:
            grid = (schedule.num_tiles, triton.cdiv(d_hidden, blocks["BLOCK_N"]))
            _swiglu_down_bwd_kernel[grid](
                grad_out, token_of_slot_S if scatter else schedule.start, w_down_DF, gate_SF, up_SF,
                weight_S if scatter else schedule.start, grad_weight_S if scatter else gate_SF,
                grad_gate_SF, grad_up_SF, hidden_SF,
                schedule.expert, schedule.start, schedule.end, d_model, d_hidden,
                grad_out.stride(0), grad_out.stride(1),
                w_down_DF.stride(0), w_down_DF.stride(2), w_down_DF.stride(1),
                gate_SF.stride(0), gate_SF.stride(1),
                SCATTER=scatter, **dot_flags(x.dtype), **blocks)
        row_tokens = token_of_slot_S if scatter else None
        grad_down_EFD = launch_grouped_wgrad(
            schedule, hidden_SF, grad_out, torch.empty_like(w_down_EFD),
            row_b_S=row_tokens, scale_S=weight_S if scatter else None, blocks=wblocks)
        del hidden_SF
        gather = token_of_slot_S
        grad_gate_EDF = launch_grouped_wgrad(schedule, x, grad_gate_SF, torch.empty_like(w_gate_EDF),
                                             row_a_S=gather, blocks=wblocks)
        grad_up_EDF = launch_grouped_wgrad(schedule, x, grad_up_SF, torch.empty_like(w_up_EDF),
                                           row_a_S=gather, blocks=wblocks)
        w_gate_T = w_gate_EDF.transpose(1, 2).contiguous()  # [E, F, D] for the x-gradient GEMM
        w_up_T = w_up_EDF.transpose(1, 2).contiguous()
        if gather is not None and slot_order_S is not None:
            grad_x_TKD = x.new_empty(num_slots, d_model)
            launch_grouped_gemm(schedule, grad_gate_SF, w_gate_T, grad_x_TKD, a2_MK=grad_up_SF, b2_EKN=w_up_T,
                                row_c_S=slot_order_S, atomic=False, blocks=blocks)
            grad_x = grad_x_TKD.view(x.shape[0], -1, d_model).sum(1, dtype=torch.float32).to(x.dtype)
        elif gather is not None:
            grad_x32 = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
            launch_grouped_gemm(schedule, grad_gate_SF, w_gate_T, grad_x32, a2_MK=grad_up_SF, b2_EKN=w_up_T,
                                row_c_S=gather, blocks=blocks)
            grad_x = grad_x32.to(x.dtype)
        else:
            grad_x = torch.empty_like(x)
            launch_grouped_gemm(schedule, grad_gate_SF, w_gate_T, grad_x, a2_MK=grad_up_SF, b2_EKN=w_up_T,
                                blocks=blocks)
        grad_weight = grad_weight_S.to(weight_S.dtype) if scatter else None
        return grad_x, grad_gate_EDF, grad_up_EDF, grad_down_EFD, None, None, grad_weight, None, None


# ---------------------------------------------------------------------------- dispatcher
def grouped_swiglu(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S: Optional[torch.Tensor] = None,
                   weight_S: Optional[torch.Tensor] = None, return_sums: bool = False, impl: str = "auto",
                   slot_order_S: Optional[torch.Tensor] = None):
    """Grouped SwiGLU experts (see the module docstring). ``impl``: ``auto`` (Triton on CUDA, the
    torch production path on CPU), ``triton``, ``torch`` or ``reference``.

    ``slot_order_S`` (optional, scatter mode, every token routed to exactly K slots): the flat
    (token, k) position of each sorted slot (``Dispatch.slot_order_S``). The Triton path then writes
    each slot's weighted output to its own row and sums over K, deterministic and without atomics.
    """
    _check(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S, weight_S)
    chosen = resolve_impl(impl, x)
    if chosen == "reference":
        return grouped_swiglu_reference(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S,
                                        weight_S, return_sums)
    if chosen == "triton":
        use_order = slot_order_S if weight_S is not None and slot_order_S is not None else None
        if use_order is not None and use_order.shape[0] % x.shape[0]:
            raise ValueError("grouped_swiglu: slot_order_S needs exactly K slots per token")
        out, sums_ED = _TritonGroupedSwiGLU.apply(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S,
                                                  weight_S, return_sums, use_order)
    else:
        out, sums_ED = _TorchGroupedSwiGLU.apply(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S,
                                                 weight_S, return_sums)
    return (out, sums_ED) if return_sums else out
