"""Default-MoE statistics: per-expert sums and counts of raw expert outputs, in one pass.

Shape legend: S routing slots sorted by expert, D model width, E experts.

    sums_ED[e] = sum_{s in e} raw_SD[s]   (fp32),   counts_E[e] = number of slots of e

The EMA (spec 1.2) uses m_e = sums_ED[e] / counts_E[e]; sums and counts are all-reduced across
ranks before the update. The statistics are detached by definition (Ehat never carries gradient),
so no backward exists. Slots are expert-sorted, so one program owns one (expert, D tile) and sums
its contiguous rows: deterministic, no atomics. When the slots are not materialised (the fused
scatter path of ``grouped_swiglu``), the same sums come from its ``return_sums`` epilogue.
"""

from __future__ import annotations

import torch

from kernels._triton import interpreting, resolve_impl, tl, triton


def default_stats_reference(raw_SD: torch.Tensor, offsets_E: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pure-torch reference: (sums_ED fp32, counts_E fp32)."""
    offsets_E = offsets_E.long()
    counts_E = torch.diff(offsets_E, prepend=offsets_E.new_zeros(1))
    expert_of_slot_S = torch.repeat_interleave(torch.arange(offsets_E.shape[0], device=raw_SD.device), counts_E,
                                               output_size=raw_SD.shape[0])
    sums_ED = torch.zeros(offsets_E.shape[0], raw_SD.shape[1], device=raw_SD.device).index_add(
        0, expert_of_slot_S, raw_SD.detach().float())
    return sums_ED, counts_E.float()


@triton.jit
def _default_stats_kernel(raw_ptr, offsets_ptr, sums_ptr, counts_ptr, D, stride_rm, stride_rd,
                          BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
    expert = tl.program_id(0)
    pid_d = tl.program_id(1)
    end = tl.load(offsets_ptr + expert)
    start = tl.load(offsets_ptr + expert - 1, mask=expert > 0, other=0)
    ds = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = ds < D
    acc = tl.zeros((BLOCK_D,), dtype=tl.float32)
    for m0 in range(start, end, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        mask = (rows < end)[:, None] & d_mask[None, :]
        tile = tl.load(raw_ptr + rows.to(tl.int64)[:, None] * stride_rm + ds[None, :] * stride_rd, mask=mask, other=0.0)
        acc += tl.sum(tile.to(tl.float32), axis=0)
    tl.store(sums_ptr + expert * D + ds, acc, mask=d_mask)
    if pid_d == 0:
        tl.store(counts_ptr + expert, (end - start).to(tl.float32))


@torch.no_grad()
def default_stats(raw_SD: torch.Tensor, offsets_E: torch.Tensor, impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-expert sums (fp32 [E, D]) and counts (fp32 [E]) of expert-sorted raw outputs."""
    if resolve_impl(impl, raw_SD) == "reference":
        return default_stats_reference(raw_SD, offsets_E)
    num_experts, d_model = offsets_E.shape[0], raw_SD.shape[1]
    sums_ED = torch.empty(num_experts, d_model, device=raw_SD.device, dtype=torch.float32)
    counts_E = torch.empty(num_experts, device=raw_SD.device, dtype=torch.float32)
    block_d = 128 if interpreting() else 64
    block_m = 64 if interpreting() else 32
    grid = (num_experts, triton.cdiv(d_model, block_d))
    _default_stats_kernel[grid](raw_SD, offsets_E.to(torch.int32).contiguous(), sums_ED, counts_E, d_model,
                                raw_SD.stride(0), raw_SD.stride(1), BLOCK_M=block_m, BLOCK_D=block_d)
    return sums_ED, counts_E
