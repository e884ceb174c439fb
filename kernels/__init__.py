"""Triton kernels for the MoE layer, each with the one pure-torch oracle of ``kernels.reference``.

Every entry point takes ``impl`` (see ``kernels._triton.resolve_impl``): ``auto`` (default) runs
Triton on CUDA tensors and the torch path elsewhere (for ``grouped_swiglu`` a hand-written CPU path
whose fp32 products go through oneDNN: ``kernels.cpu_gemm``; for the other ops the reference);
``triton`` forces the kernels (on CPU only under TRITON_INTERPRET=1, set before this package is
imported); ``torch`` the torch path; ``reference`` the oracle.
"""

from kernels._triton import HAS_TRITON, IMPLS, Impl, force_impl, interpreting, resolve_impl
from kernels.expert_group import expert_group_gather, expert_group_scatter
from kernels.grouped_swiglu import grouped_swiglu
from kernels.reference import (
    expert_group_gather_reference,
    expert_group_means,
    expert_group_scatter_reference,
    fused_routing_reference,
    grouped_swiglu_reference,
    select_experts,
)
from kernels.routing import fused_routing

__all__ = [
    "HAS_TRITON", "IMPLS", "Impl", "force_impl", "interpreting", "resolve_impl",
    "expert_group_gather", "expert_group_gather_reference", "expert_group_means", "expert_group_scatter",
    "expert_group_scatter_reference",
    "grouped_swiglu", "grouped_swiglu_reference",
    "fused_routing", "fused_routing_reference", "select_experts",
]
