"""MoELayer with ``backend: fused`` on the Triton kernels (interpreted on CPU) and on the CPU torch
path, against the ``loop`` reference backend, for every router: outputs, gradients, statistics.
"""

from __future__ import annotations

import pytest
import torch

from kernels import force_impl
from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.moe_layer import MoELayer
from tests.kernels.helpers import assert_close, force_onednn_cpu_path

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _layer_outputs(backend: str, router: str, top_k: int, normalize: bool):
    config = MoETransformerConfig(d_model=48, n_heads=4, num_experts=5, top_k=top_k, d_expert=40, router=router,
                                  backend=backend, normalize_topk=normalize, bias_update_rate=0.01)
    torch.manual_seed(0)
    layer = MoELayer(config).to(DEVICE)
    with torch.no_grad():
        layer.default_vectors_ED.normal_()
        layer.router.expert_bias_E.normal_(std=0.01)
        layer.experts.w_gate_EDF.normal_(std=0.2)
        layer.experts.w_up_EDF.normal_(std=0.2)
    x_BSD = torch.randn(2, 19, 48, device=DEVICE, requires_grad=True)
    y_BSD, stats = layer(x_BSD)
    loss = (y_BSD * torch.randn_like(y_BSD)).sum() + stats.aux_loss
    loss.backward()
    grads = [x_BSD.grad, layer.router.weight_ED.grad, layer.experts.w_gate_EDF.grad, layer.experts.w_down_EFD.grad]
    extra = [stats.load_counts_E, stats.aux_loss.detach()]
    if stats.default_sums_ED is not None:
        extra += [stats.default_sums_ED, stats.default_counts_E]
    return [y_BSD.detach()] + grads + extra


@pytest.mark.parametrize("impl", ["triton", "torch", "torch_onednn"])
@pytest.mark.parametrize("router,top_k,normalize", [
    ("topk", 2, False), ("topk", 1, True), ("default", 2, False), ("default", 5, True),
    ("expert_group", 2, False), ("expert_group", 3, True), ("dense", 2, False),
])
def test_fused_backend_matches_loop(router, top_k, normalize, impl, monkeypatch):
    if impl == "torch_onednn":  # the CPU path with oneDNN products at this small size, padded rows
        force_onednn_cpu_path(monkeypatch)
        impl = "torch"
    expected = _layer_outputs("loop", router, top_k, normalize)
    with force_impl(impl):
        actual = _layer_outputs("fused", router, top_k, normalize)
    assert len(actual) == len(expected)
    # The router gradient is a softmax backward of nearly uniform aux-loss gradients (cancellation):
    # on CUDA, different fp32 reduction orders leave ~5e-4 relative differences there.
    rtol = 1e-4 if DEVICE == "cpu" else 2e-3
    for index, (got, want) in enumerate(zip(actual, expected)):
        assert_close(got, want, rtol=rtol, what=f"{router} output #{index}")
