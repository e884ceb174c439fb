"""fp32 matrix products on CPU through oneDNN, for the per-expert GEMMs of the CPU production path.

Shape legend: M rows, K reduction width, N output columns (A_MK @ B_KN).

Why: ``torch.mm`` on fp32 CPU tensors calls the BLAS torch was built with (MKL in the x86-64
wheels) at full precision; torch routes a matmul to oneDNN only in reduced-precision modes (bf16
operands, or ``torch.backends.mkldnn.matmul.fp32_precision`` = bf16/tf32). MKL chooses its kernels
by CPU vendor and runs AVX2 code on AMD EPYC even where the core has AVX-512; oneDNN chooses by
instruction set. Measured on the 2-core AMD EPYC dev VM (torch 2.13, fp32, 2 threads): a 2688^3
product 186 GFLOP/s with ``torch.mm`` vs 343 with oneDNN; the expert GEMM shapes 512x256x256:
169 vs 347 (activations x weights), 165 vs 225 (weight gradients, transposed operands).
Results agree with ``torch.mm`` to fp32 rounding (both accumulate in fp32).

How: ``torch.ops.mkldnn._linear_pointwise`` (the op Inductor's CPU backend emits for fused linear
layers) computes X @ W^T with oneDNN; its ``binary`` overload adds a second tensor in the epilogue.
It is a private op, so it is used only where it exists, torch was built with mkldnn, mkldnn is
enabled (``torch.backends.mkldnn.flags(enabled=False)`` turns this path off), the operands are fp32
CPU tensors with nothing to record for autograd (the op has no derivative: callers run inside
their own ``autograd.Function``), CPU autocast is off (under it ``torch.mm`` computes in bf16,
through oneDNN already) and the product is large enough: below ~2M multiply-adds oneDNN's per-call
cost (~20 us) exceeds MKL's.

oneDNN JIT-builds one primitive per shape and keeps them in an LRU cache (1024 by default); a row
count that changes every step (tokens per expert) would rebuild primitives all the time (measured:
the first call of each new shape runs at ~1/3 speed). ``CpuGemm.rows`` rounds row counts up to a
small set of sizes (16 steps per octave: at most 6.25% padding, ~3% on average); callers pad their
operands with zero rows, which contribute nothing to any product or gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# below this many multiply-adds per product, MKL's lower call overhead wins (measured crossover ~2M)
MIN_ONEDNN_MACS = 1 << 22


def _linear_pointwise():
    """The oneDNN linear op, or None where this torch build lacks it."""
    try:
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def onednn_matmul_usable(*tensors: torch.Tensor) -> bool:
    """fp32 CPU operands, nothing to record for autograd, CPU autocast off, and a torch build whose
    oneDNN path is present and enabled."""
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return False
    if torch.is_autocast_enabled("cpu"):  # torch.mm would run in the autocast dtype: keep that behaviour
        return False
    return bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
                and _linear_pointwise() is not None)


def bucketed_rows(num_rows: int) -> int:
    """``num_rows`` rounded up to one of 16 sizes per octave (exact up to 32 rows)."""
    if num_rows <= 32:
        return num_rows
    step = 1 << (num_rows.bit_length() - 5)
    return -(-num_rows // step) * step


@dataclass(frozen=True)
class CpuGemm:
    """Matrix products for one grouped-expert call: oneDNN (``onednn=True``) or ``torch.mm``."""

    onednn: bool

    @classmethod
    def for_operands(cls, x: torch.Tensor, weight: torch.Tensor, macs_per_product: int) -> "CpuGemm":
        """oneDNN when it is usable for these operands and a typical product is large enough."""
        return cls(macs_per_product >= MIN_ONEDNN_MACS and onednn_matmul_usable(x, weight))

    def rows(self, num_rows: int) -> int:
        """Row count to pad an operand to (bucketed for oneDNN's primitive cache, else unchanged)."""
        return bucketed_rows(num_rows) if self.onednn else num_rows

    def lhs(self, a_MK: torch.Tensor) -> torch.Tensor:
        """``a`` laid out for use as the left operand of several products (contiguous for oneDNN)."""
        return a_MK.contiguous() if self.onednn else a_MK

    def mm(self, a_MK: torch.Tensor, b_KN: torch.Tensor) -> torch.Tensor:
        """a @ b (operands may be transposed views)."""
        if self.onednn:
            # oneDNN takes any strides for b (it reorders the "weights" anyway) but copies a strided a
            # 5x slower than .contiguous() does (336 vs 58 us for a transposed 512x256 fp32 block)
            return torch.ops.mkldnn._linear_pointwise(self.lhs(a_MK), b_KN.t(), None, "none", [], "")
        return a_MK @ b_KN

    def mm_into(self, out_MN: torch.Tensor, a_MK: torch.Tensor, b_KN: torch.Tensor) -> None:
        """out = (a @ b)[:len(out)], written into ``out`` (a view: one expert's slice of a weight gradient
        or of an output); ``a`` may carry zero padding rows beyond ``len(out)`` on the oneDNN path."""
        if self.onednn:
            out_MN.copy_(self.mm(a_MK, b_KN)[: out_MN.shape[0]])
        else:
            torch.mm(a_MK, b_KN, out=out_MN)

    def mm_add(self, a_MK: torch.Tensor, b_KN: torch.Tensor, c_MJ: torch.Tensor, d_JN: torch.Tensor) -> torch.Tensor:
        """a @ b + c @ d (oneDNN adds the first product in the second's epilogue)."""
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise.binary(c_MJ, self.mm(a_MK, b_KN), d_JN.t(), None, "add")
        return (a_MK @ b_KN).addmm_(c_MJ, d_JN)
