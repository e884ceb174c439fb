"""Triton kernels for the MoE layer, each with a pure-torch reference beside it.

Every entry point takes ``impl``: ``auto`` (default) runs Triton on CUDA tensors and the reference
(or, for ``grouped_swiglu``, the hand-written torch path, with fp32 products through oneDNN:
``kernels.cpu_gemm``) on CPU; ``triton`` forces the kernels
(on CPU only under TRITON_INTERPRET=1, set before this package is imported); ``reference`` forces
the pure-torch oracle.
"""

from kernels._triton import HAS_TRITON, force_impl, interpreting, resolve_impl
from kernels.default_stats import default_stats, default_stats_reference
from kernels.expert_group import (
    expert_group_gather, expert_group_gather_reference, expert_group_scatter, expert_group_scatter_reference,
)
from kernels.grouped_swiglu import grouped_swiglu, grouped_swiglu_reference
from kernels.routing import fused_routing, fused_routing_reference

__all__ = [
    "HAS_TRITON", "force_impl", "interpreting", "resolve_impl",
    "default_stats", "default_stats_reference",
    "expert_group_gather", "expert_group_gather_reference", "expert_group_scatter", "expert_group_scatter_reference",
    "grouped_swiglu", "grouped_swiglu_reference",
    "fused_routing", "fused_routing_reference",
]
