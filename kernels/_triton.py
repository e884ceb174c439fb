"""Shared Triton plumbing: optional import, interpreter detection, the expert tile schedule, and the
generic grouped GEMMs every kernel of this package builds on.

Shape legend: T tokens, D model width, E experts, S routing slots sorted by expert, M rows of a tile,
N output columns, K reduction width, P/Q the two dimensions of a per-expert weight gradient.

``grouped_gemm_kernel``: C[s] = A[row_a(s)] @ B[e(s)] (+ A2[row_a(s)] @ B2[e(s)]) over
expert-sorted slots; tiles never straddle two experts, rows are gathered inside the tile (no padded
per-expert copies), the epilogue scales by a per-slot weight and either stores row s or atomically
adds into row ``row_c(s)`` (scatter back to tokens); it can also add per-expert column sums.
``grouped_wgrad_kernel``: W[e] = alpha * sum_{s in e} A[row_a(s)]^T (scale_s * B[row_b(s)]), the
weight gradient of a grouped GEMM (one program per expert and output tile, no atomics).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import types
from typing import Literal, Optional

import torch

try:  # Triton is optional: the pure-torch references run without it.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only on machines without triton
    HAS_TRITON = False

    def _jit(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)

    triton = types.SimpleNamespace(jit=_jit, cdiv=lambda a, b: -(-a // b))
    tl = types.SimpleNamespace(constexpr=object)


def interpreting() -> bool:
    """True when Triton runs kernels on the CPU through its interpreter (TRITON_INTERPRET=1)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_usable(*tensors: torch.Tensor) -> bool:
    """Kernels can run on these tensors: CUDA with Triton, or anything under the interpreter."""
    if not HAS_TRITON:
        return False
    return interpreting() or all(t.is_cuda for t in tensors)


Impl = Literal["auto", "triton", "torch", "reference"]
IMPLS = ("auto", "triton", "torch", "reference")

# Context-local (thread- and task-safe), not module-global: what ``impl='auto'`` resolves to, if forced.
_forced_impl: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("kernels_forced_impl", default=None)


@contextlib.contextmanager
def force_impl(impl: Impl):
    """Make ``impl='auto'`` mean ``impl`` inside the block (tests run whole layers on the kernels)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    token = _forced_impl.set(impl)
    try:
        yield
    finally:
        _forced_impl.reset(token)


def resolve_impl(impl: Impl, *tensors: torch.Tensor) -> str:
    """The one resolver every op calls: ``auto`` (after ``force_impl``) -> ``triton`` on CUDA tensors,
    ``torch`` (the CPU production path; for ops without one, the reference) elsewhere; ``reference``
    always means the oracle of ``kernels.reference``; an explicit ``triton`` is checked."""
    if impl == "auto" and _forced_impl.get() is not None:
        impl = _forced_impl.get()
    if impl == "auto":
        return "triton" if HAS_TRITON and all(t.is_cuda for t in tensors) else "torch"
    if impl == "triton" and not triton_usable(*tensors):
        raise RuntimeError(
            "impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before importing kernels) and "
            "an installed triton; use impl='auto' to fall back to the pure-torch path.")
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def dot_flags(dtype: torch.dtype) -> dict:
    """Interpreter: tl.dot on bf16 is wrong, so tiles go through fp32. GPU fp32: exact (ieee) dots."""
    return {"DOT_FP32": interpreting(), "IEEE": dtype == torch.float32}


def gemm_blocks(dtype: torch.dtype) -> dict:
    """Tile sizes: big blocks under the interpreter (each program costs ~4 ms of Python)."""
    if interpreting():
        return {"BLOCK_M": 32, "BLOCK_N": 64, "BLOCK_K": 64}
    if dtype == torch.float32:
        return {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3}
    return {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "num_warps": 4, "num_stages": 3}


def wgrad_blocks(dtype: torch.dtype) -> dict:
    if interpreting():
        return {"BLOCK_P": 64, "BLOCK_Q": 64, "BLOCK_K": 64}
    if dtype == torch.float32:
        return {"BLOCK_P": 64, "BLOCK_Q": 64, "BLOCK_K": 32, "num_warps": 4, "num_stages": 3}
    return {"BLOCK_P": 128, "BLOCK_Q": 128, "BLOCK_K": 64, "num_warps": 8, "num_stages": 3}


class TileSchedule:
    """Row tiles of expert-sorted slots, built on the device without a host sync.

    ``num_tiles`` is the upper bound ceil(S / M) + E; unused tiles get start == end and exit early.
    """

    def __init__(self, offsets_E: torch.Tensor, num_slots: int, block_m: int) -> None:
        offsets_E = offsets_E.to(torch.int64)
        num_experts = offsets_E.shape[0]
        starts_E = torch.cat([offsets_E.new_zeros(1), offsets_E[:-1]])
        counts_E = offsets_E - starts_E
        tiles_E = (counts_E + block_m - 1) // block_m
        tile_end_E = torch.cumsum(tiles_E, 0)
        self.num_tiles = max(1, -(-num_slots // block_m) + num_experts)
        tile_ids = torch.arange(self.num_tiles, device=offsets_E.device)
        expert = torch.searchsorted(tile_end_E, tile_ids, right=True)
        used = expert < num_experts
        expert = expert.clamp(max=num_experts - 1)
        first_tile = tile_end_E[expert] - tiles_E[expert]
        start = starts_E[expert] + (tile_ids - first_tile) * block_m
        end = torch.minimum(start + block_m, offsets_E[expert])
        self.expert = expert.to(torch.int32)
        self.start = torch.where(used, start, 0).to(torch.int32)
        self.end = torch.where(used, end, 0).to(torch.int32)
        self.starts_E = starts_E.to(torch.int32)
        self.ends_E = offsets_E.to(torch.int32)
        self.block_m = block_m


@triton.jit
def _dot(a, b, acc, DOT_FP32: tl.constexpr, IEEE: tl.constexpr):
    if DOT_FP32:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    else:
        b = b.to(a.dtype)
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)


@triton.jit
def grouped_gemm_kernel(
    a_ptr, a2_ptr, row_a_ptr, b_ptr, b2_ptr, c_ptr, scale_ptr, row_c_ptr, sums_ptr,
    tile_expert_ptr, tile_start_ptr, tile_end_ptr,
    K, N, alpha,
    stride_am, stride_ak, stride_be, stride_bk, stride_bn, stride_cm, stride_cn, stride_se,
    GATHER_A: tl.constexpr, HAS_SECOND: tl.constexpr, HAS_SCALE: tl.constexpr,
    SCATTER_C: tl.constexpr, ATOMIC_C: tl.constexpr, HAS_SUMS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr, IEEE: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    start = tl.load(tile_start_ptr + pid_m)
    end = tl.load(tile_end_ptr + pid_m)
    if start >= end:
        return
    expert = tl.load(tile_expert_ptr + pid_m).to(tl.int64)
    rows = start + tl.arange(0, BLOCK_M)
    row_mask = rows < end
    if GATHER_A:
        src = tl.load(row_a_ptr + rows, mask=row_mask, other=0).to(tl.int64)
    else:
        src = rows.to(tl.int64)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_mask = cols < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < K
        a_off = src[:, None] * stride_am + ks[None, :] * stride_ak
        a_mask = row_mask[:, None] & k_mask[None, :]
        b_off = expert * stride_be + ks[:, None] * stride_bk + cols[None, :] * stride_bn
        b_mask = k_mask[:, None] & col_mask[None, :]
        a = tl.load(a_ptr + a_off, mask=a_mask, other=0.0)
        b = tl.load(b_ptr + b_off, mask=b_mask, other=0.0)
        acc = _dot(a, b, acc, DOT_FP32, IEEE)
        if HAS_SECOND:
            a2 = tl.load(a2_ptr + a_off, mask=a_mask, other=0.0)
            b2 = tl.load(b2_ptr + b_off, mask=b_mask, other=0.0)
            acc = _dot(a2, b2, acc, DOT_FP32, IEEE)
    mask = row_mask[:, None] & col_mask[None, :]
    if HAS_SUMS:  # per-expert column sums of the unscaled product (Default-MoE statistics)
        col_sums = tl.sum(tl.where(mask, acc, 0.0), axis=0)
        tl.atomic_add(sums_ptr + expert * stride_se + cols, col_sums, mask=col_mask)
    if HAS_SCALE:
        acc = acc * tl.load(scale_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)[:, None]
    acc = acc * alpha
    if SCATTER_C:
        dst = tl.load(row_c_ptr + rows, mask=row_mask, other=0).to(tl.int64)
        c_off = dst[:, None] * stride_cm + cols[None, :] * stride_cn
        if ATOMIC_C:  # several slots per destination row
            tl.atomic_add(c_ptr + c_off, acc, mask=mask)
        else:  # one slot per destination row (a permutation): plain, deterministic stores
            tl.store(c_ptr + c_off, acc.to(c_ptr.dtype.element_ty), mask=mask)
    else:
        c_off = rows.to(tl.int64)[:, None] * stride_cm + cols[None, :] * stride_cn
        tl.store(c_ptr + c_off, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.jit
def grouped_wgrad_kernel(
    a_ptr, row_a_ptr, b_ptr, row_b_ptr, scale_ptr, w_ptr, starts_ptr, ends_ptr,
    P, Q, alpha,
    stride_am, stride_ap, stride_bm, stride_bq, stride_we, stride_wp, stride_wq,
    GATHER_A: tl.constexpr, GATHER_B: tl.constexpr, HAS_SCALE: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_FP32: tl.constexpr, IEEE: tl.constexpr,
):
    expert = tl.program_id(0)
    pid_p = tl.program_id(1)
    pid_q = tl.program_id(2)
    start = tl.load(starts_ptr + expert)
    end = tl.load(ends_ptr + expert)
    ps = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    qs = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    p_mask = ps < P
    q_mask = qs < Q
    acc = tl.zeros((BLOCK_P, BLOCK_Q), dtype=tl.float32)
    for s0 in range(start, end, BLOCK_K):
        rows = s0 + tl.arange(0, BLOCK_K)
        row_mask = rows < end
        if GATHER_A:
            ra = tl.load(row_a_ptr + rows, mask=row_mask, other=0).to(tl.int64)
        else:
            ra = rows.to(tl.int64)
        if GATHER_B:
            rb = tl.load(row_b_ptr + rows, mask=row_mask, other=0).to(tl.int64)
        else:
            rb = rows.to(tl.int64)
        a = tl.load(a_ptr + ra[:, None] * stride_am + ps[None, :] * stride_ap,
                    mask=row_mask[:, None] & p_mask[None, :], other=0.0)
        b = tl.load(b_ptr + rb[:, None] * stride_bm + qs[None, :] * stride_bq,
                    mask=row_mask[:, None] & q_mask[None, :], other=0.0)
        if HAS_SCALE:
            scale = tl.load(scale_ptr + rows, mask=row_mask, other=0.0).to(tl.float32)
            b = (b.to(tl.float32) * scale[:, None]).to(b.dtype)
        acc = _dot(tl.trans(a), b, acc, DOT_FP32, IEEE)
    w_off = expert.to(tl.int64) * stride_we + ps[:, None] * stride_wp + qs[None, :] * stride_wq
    tl.store(w_ptr + w_off, (acc * alpha).to(w_ptr.dtype.element_ty), mask=p_mask[:, None] & q_mask[None, :])


def launch_grouped_gemm(schedule: TileSchedule, a_MK: torch.Tensor, b_EKN: torch.Tensor, out: torch.Tensor,
                        *, row_a_S=None, a2_MK=None, b2_EKN=None, scale_S=None, row_c_S=None,
                        sums_EN=None, alpha: float = 1.0, atomic: bool = True, blocks: dict) -> torch.Tensor:
    """Run ``grouped_gemm_kernel``; ``out`` is [S, N] (store) or, with ``row_c_S``, [rows, N] written at
    row_c(s): fp32 atomic adds, or plain stores when ``atomic=False`` (row_c must be a permutation)."""
    n_cols = b_EKN.shape[2]
    dummy = schedule.start
    grid = (schedule.num_tiles, triton.cdiv(n_cols, blocks["BLOCK_N"]))
    grouped_gemm_kernel[grid](
        a_MK, a2_MK if a2_MK is not None else a_MK, row_a_S if row_a_S is not None else dummy,
        b_EKN, b2_EKN if b2_EKN is not None else b_EKN, out,
        scale_S if scale_S is not None else dummy, row_c_S if row_c_S is not None else dummy,
        sums_EN if sums_EN is not None else out,
        schedule.expert, schedule.start, schedule.end,
        a_MK.shape[1], n_cols, alpha,
        a_MK.stride(0), a_MK.stride(1), b_EKN.stride(0), b_EKN.stride(1), b_EKN.stride(2),
        out.stride(0), out.stride(1), sums_EN.stride(0) if sums_EN is not None else 0,
        GATHER_A=row_a_S is not None, HAS_SECOND=a2_MK is not None, HAS_SCALE=scale_S is not None,
        SCATTER_C=row_c_S is not None, ATOMIC_C=atomic, HAS_SUMS=sums_EN is not None,
        **dot_flags(a_MK.dtype), **blocks,
    )
    return out


def launch_grouped_wgrad(schedule: TileSchedule, a_MP: torch.Tensor, b_MQ: torch.Tensor, w_EPQ: torch.Tensor,
                         *, row_a_S=None, row_b_S=None, scale_S=None, alpha: float = 1.0,
                         blocks: dict) -> torch.Tensor:
    """Run ``grouped_wgrad_kernel`` into ``w_EPQ`` (every entry written; empty experts get zeros)."""
    num_experts, p_dim, q_dim = w_EPQ.shape
    dummy = schedule.start
    grid = (num_experts, triton.cdiv(p_dim, blocks["BLOCK_P"]), triton.cdiv(q_dim, blocks["BLOCK_Q"]))
    grouped_wgrad_kernel[grid](
        a_MP, row_a_S if row_a_S is not None else dummy, b_MQ, row_b_S if row_b_S is not None else dummy,
        scale_S if scale_S is not None else dummy, w_EPQ, schedule.starts_E, schedule.ends_E,
        p_dim, q_dim, alpha,
        a_MP.stride(0), a_MP.stride(1), b_MQ.stride(0), b_MQ.stride(1),
        w_EPQ.stride(0), w_EPQ.stride(1), w_EPQ.stride(2),
        GATHER_A=row_a_S is not None, GATHER_B=row_b_S is not None, HAS_SCALE=scale_S is not None,
        **dot_flags(a_MP.dtype), **blocks,
    )
    return w_EPQ
