"""Grouped SwiGLU: Triton kernels (interpreted on CPU) and the torch production path vs the reference.

Shape legend: T tokens, D model width, E experts, F expert hidden width, S routing slots.
"""

from __future__ import annotations

import pytest
import torch

from kernels import grouped_swiglu, grouped_swiglu_reference
from tests.kernels.helpers import CASES, assert_close, force_onednn_cpu_path, random_routing

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _problem(case: str, seed: int = 0):
    num_tokens, d_model, num_experts, top_k, d_hidden, empty = CASES[case]
    torch.manual_seed(seed)
    routing = random_routing(num_tokens, num_experts, top_k, empty, DEVICE, seed)
    x_TD = torch.randn(num_tokens, d_model, device=DEVICE)
    w_gate_EDF = torch.randn(num_experts, d_model, d_hidden, device=DEVICE) / d_model ** 0.5
    w_up_EDF = torch.randn(num_experts, d_model, d_hidden, device=DEVICE) / d_model ** 0.5
    w_down_EFD = torch.randn(num_experts, d_hidden, d_model, device=DEVICE) / d_hidden ** 0.5
    weight_S = torch.rand(routing.token_of_slot_S.shape[0], device=DEVICE)
    return routing, x_TD, (w_gate_EDF, w_up_EDF, w_down_EFD), weight_S


def _run(impl, mode, routing, x_TD, weights, weight_S, grad_seed=1):
    leaves = [t.detach().clone().requires_grad_() for t in (x_TD, *weights, weight_S)]
    x, wg, wu, wd, w = leaves
    if mode == "scatter":
        out, sums = grouped_swiglu(x, wg, wu, wd, routing.offsets_E, routing.token_of_slot_S, w,
                                   return_sums=True, impl=impl)
        leaves_used = leaves
    elif mode == "scatter_ordered":  # deterministic token-major store + sum over K
        out, sums = grouped_swiglu(x, wg, wu, wd, routing.offsets_E, routing.token_of_slot_S, w,
                                   return_sums=True, impl=impl, slot_order_S=routing.slot_order_S)
        leaves_used = leaves
    elif mode == "gather_raw":  # tokens gathered inside the tiles, raw slot outputs back
        out, sums = grouped_swiglu(x, wg, wu, wd, routing.offsets_E, routing.token_of_slot_S,
                                   return_sums=True, impl=impl)
        leaves_used = leaves[:4]
    else:  # rows already gathered per slot, raw outputs back
        out, sums = grouped_swiglu(x[routing.token_of_slot_S], wg, wu, wd, routing.offsets_E,
                                   return_sums=True, impl=impl)
        leaves_used = leaves[:4]
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)).to(out.device)
    grads = torch.autograd.grad((out * grad_out).sum(), leaves_used)
    return out.detach(), sums, grads


@pytest.mark.parametrize("impl", ["triton", "torch", "torch_onednn"])
@pytest.mark.parametrize("mode", ["scatter", "scatter_ordered", "gather_raw", "raw"])
@pytest.mark.parametrize("case", list(CASES))
def test_grouped_swiglu_matches_reference(case, mode, impl, monkeypatch):
    if impl == "torch_onednn":  # the CPU path's oneDNN products at any size, padded rows
        force_onednn_cpu_path(monkeypatch)
        impl = "torch"
    routing, x_TD, weights, weight_S = _problem(case)
    expected = _run("reference", mode, routing, x_TD, weights, weight_S)
    actual = _run(impl, mode, routing, x_TD, weights, weight_S)
    assert_close(actual[0], expected[0], what="output")
    assert_close(actual[1], expected[1], what="per-expert sums")
    names = ["grad x", "grad w_gate", "grad w_up", "grad w_down", "grad weight"]
    for name, got, want in zip(names, actual[2], expected[2]):
        assert_close(got, want, what=name)
    for empty_expert in CASES[case][5]:  # experts without tokens get exactly zero gradient and sums
        assert actual[1][empty_expert].abs().max() == 0
        for grad in actual[2][1:4]:
            assert grad[empty_expert].abs().max() == 0


def test_reference_matches_dense_formula():
    """The reference itself against the per-token formula y_t = sum_k w_tk E_{idx_tk}(x_t)."""
    routing, x_TD, (wg, wu, wd), weight_S = _problem("odd_empty")
    y_TD = grouped_swiglu_reference(x_TD, wg, wu, wd, routing.offsets_E, routing.token_of_slot_S, weight_S)
    weight_TK = torch.empty_like(weight_S)
    weight_TK[routing.slot_order_S] = weight_S
    weight_TK = weight_TK.view(x_TD.shape[0], -1)
    expected = torch.zeros_like(y_TD)
    for t in range(x_TD.shape[0]):
        for k, e in enumerate(routing.idx_TK[t].tolist()):
            hidden = torch.nn.functional.silu(x_TD[t] @ wg[e]) * (x_TD[t] @ wu[e])
            expected[t] += weight_TK[t, k] * (hidden @ wd[e])
    assert_close(y_TD, expected, rtol=1e-5)


def test_bf16_forward_and_backward_close_to_fp32():
    routing, x_TD, weights, weight_S = _problem("multi_tile")
    expected = _run("reference", "scatter", routing, x_TD, weights, weight_S)
    low = [t.bfloat16() for t in weights]
    actual = _run("triton", "scatter", routing, x_TD.bfloat16(), low, weight_S)
    assert actual[0].dtype == torch.bfloat16
    assert_close(actual[0], expected[0], rtol=3e-2, what="bf16 output")
    for got, want in zip(actual[2], expected[2]):
        assert_close(got, want, rtol=5e-2, what="bf16 grad")


def test_rejects_scatter_without_tokens():
    routing, x_TD, weights, weight_S = _problem("k1_empty")
    with pytest.raises(ValueError, match="token_of_slot_S"):
        grouped_swiglu(x_TD, *weights, routing.offsets_E, None, weight_S)


@pytest.mark.parametrize("max_temporary_bytes", [8 << 20, 3 * 7 * 8, 1])
def test_row_dots_matches_sum_of_products_in_one_or_many_chunks(max_temporary_bytes):
    from kernels.grouped_swiglu import row_dots  # noqa: PLC0415

    torch.manual_seed(0)
    a_NF, b_NF = torch.randn(10, 7, dtype=torch.float64), torch.randn(10, 7, dtype=torch.float64)
    torch.testing.assert_close(row_dots(a_NF, b_NF, max_temporary_bytes), (a_NF * b_NF).sum(-1))
