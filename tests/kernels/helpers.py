"""Random routing problems for the kernel tests (odd sizes, empty experts, K=1, K=N).

Shape legend: T tokens, D model width, E experts, K experts per token, F expert hidden width,
S = T*K routing slots sorted by expert.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# (T, D, E, K, F, empty_experts): odd sizes; multi-tile cases cross the interpreter's 32/64 blocks
CASES = {
    "odd_empty": (37, 40, 6, 2, 24, (3,)),
    "k1_empty": (19, 33, 5, 1, 20, (0, 4)),
    "k_equals_n": (13, 24, 4, 4, 16, ()),
    "multi_tile": (70, 72, 5, 3, 80, (2,)),
}


@dataclass
class Routing:
    idx_TK: torch.Tensor
    token_of_slot_S: torch.Tensor
    expert_of_slot_S: torch.Tensor
    slot_order_S: torch.Tensor
    offsets_E: torch.Tensor
    counts_E: torch.Tensor


def random_routing(num_tokens: int, num_experts: int, top_k: int, empty=(), device="cpu", seed=0) -> Routing:
    """Each token picks K distinct experts among the non-empty ones; slots sorted by expert."""
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([e for e in range(num_experts) if e not in empty])
    assert len(allowed) >= top_k
    rows = [allowed[torch.randperm(len(allowed), generator=gen)[:top_k]] for _ in range(num_tokens)]
    idx_TK = torch.stack(rows).to(device)
    flat_S = idx_TK.reshape(-1)
    order_S = torch.argsort(flat_S, stable=True)
    counts_E = torch.bincount(flat_S, minlength=num_experts)
    return Routing(idx_TK, order_S // top_k, flat_S[order_S], order_S, torch.cumsum(counts_E, 0).to(torch.int32),
                   counts_E)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 2e-4, what: str = "") -> None:
    """Relative error in the norm sense (robust for sums of many terms), plus a NaN check."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    scale = expected.float().norm().clamp_min(1e-6)
    err = (actual.float() - expected.float()).norm() / scale
    assert err <= rtol, f"{what}: relative error {err:.2e} > {rtol:.0e}"


def force_onednn_cpu_path(monkeypatch) -> None:
    """Make the CPU grouped-SwiGLU path use oneDNN at any size and pad every expert by 5 zero rows (the
    real bucketing pads only some counts); skips where this torch build has no usable oneDNN matmul."""
    import pytest  # noqa: PLC0415

    import kernels.cpu_gemm as cpu_gemm  # noqa: PLC0415

    if torch.cuda.is_available() or not cpu_gemm.onednn_matmul_usable(torch.zeros(1)):
        pytest.skip("CPU-only test: this machine has CUDA or no usable oneDNN fp32 matmul")
    monkeypatch.setattr(cpu_gemm, "MIN_ONEDNN_MACS", 0)
    monkeypatch.setattr(cpu_gemm, "bucketed_rows", lambda num_rows: num_rows + 5)
