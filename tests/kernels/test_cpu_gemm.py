"""kernels.cpu_gemm: oneDNN fp32 products against float64 torch, the bucketing of row counts, and
when the oneDNN path is (not) taken.

Shape legend: M rows, K reduction width, N output columns.
"""

from __future__ import annotations

import pytest
import torch

from kernels import cpu_gemm
from kernels.cpu_gemm import CpuGemm, bucketed_rows, onednn_matmul_usable

needs_onednn = pytest.mark.skipif(not onednn_matmul_usable(torch.zeros(1)),
                                  reason="this torch build has no usable oneDNN fp32 matmul")


def test_bucketed_rows_pads_little_and_takes_few_values():
    sizes = [bucketed_rows(n) for n in range(0, 5000)]
    assert sizes[:33] == list(range(33))  # small counts stay exact
    for n, padded in enumerate(sizes):
        assert n <= padded <= n * 17 / 16, (n, padded)
        assert bucketed_rows(padded) == padded  # a bucket is its own bucket
    assert sizes == sorted(sizes)
    for octave in range(5, 12):  # at most 16 sizes per octave [2^o, 2^(o+1)), plus its upper end
        assert len({p for n, p in enumerate(sizes) if 2 ** octave <= n < 2 ** (octave + 1)}) <= 17


@needs_onednn
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_onednn_products_match_float64(transpose_a, transpose_b):
    torch.manual_seed(0)
    a_MK = torch.randn(70, 33).t().contiguous().t() if transpose_a else torch.randn(70, 33)
    b_KN = torch.randn(41, 33).t() if transpose_b else torch.randn(33, 41)
    c_MJ, d_JN = torch.randn(70, 19), torch.randn(19, 41)
    gemm = CpuGemm(onednn=True)
    expected = a_MK.double() @ b_KN.double()
    torch.testing.assert_close(gemm.mm(a_MK, b_KN).double(), expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gemm.mm_add(a_MK, b_KN, c_MJ, d_JN).double(),
                               expected + c_MJ.double() @ d_JN.double(), rtol=1e-5, atol=1e-4)
    out_MN = torch.full((60, 41), float("nan"))
    gemm.mm_into(out_MN, a_MK, b_KN)  # the first 60 rows of the product: a's extra rows are padding
    torch.testing.assert_close(out_MN.double(), expected[:60], rtol=1e-5, atol=1e-4)


def test_torch_path_computes_the_same():
    torch.manual_seed(0)
    a_MK, b_KN, c_MJ, d_JN = torch.randn(9, 5), torch.randn(5, 7), torch.randn(9, 3), torch.randn(3, 7)
    gemm = CpuGemm(onednn=False)
    assert gemm.rows(45) == 45
    torch.testing.assert_close(gemm.mm_add(a_MK, b_KN, c_MJ, d_JN), a_MK @ b_KN + c_MJ @ d_JN)
    out_MN = torch.empty(9, 7)
    gemm.mm_into(out_MN, a_MK, b_KN)
    torch.testing.assert_close(out_MN, a_MK @ b_KN)


@needs_onednn
def test_onednn_is_chosen_only_where_it_applies():
    x, w = torch.zeros(4, 4), torch.zeros(4, 4)
    big = cpu_gemm.MIN_ONEDNN_MACS
    assert CpuGemm.for_operands(x, w, big).onednn
    assert CpuGemm.for_operands(x, w, big).rows(45) == bucketed_rows(45) == 46
    assert not CpuGemm.for_operands(x, w, big - 1).onednn  # too small: MKL's call overhead is lower
    assert not CpuGemm.for_operands(x.bfloat16(), w.bfloat16(), big).onednn  # torch.mm already uses oneDNN
    param = torch.zeros(4, 4, requires_grad=True)
    assert not onednn_matmul_usable(x, param)  # the op has no derivative: not while autograd records
    with torch.no_grad():
        assert onednn_matmul_usable(x, param)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # torch.mm would compute in bf16 there
        assert not CpuGemm.for_operands(x, w, big).onednn
    with torch.backends.mkldnn.flags(enabled=False):  # the user's switch turns the path off
        assert not CpuGemm.for_operands(x, w, big).onednn
