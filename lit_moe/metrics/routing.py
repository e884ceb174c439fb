"""Routing-load metrics of one MoE layer (spec §2), from per-expert slot counts c_E.

All metrics are invariant to permuting the experts. Counts should be all-reduced across ranks.
"""

from __future__ import annotations

import math

import torch


def routing_load_metrics(load_counts_E: torch.Tensor) -> dict[str, float]:
    """max_load (max N·f_i, 1 at balance), cv (population std/mean of c), load_entropy (normalised
    to [0, 1]), dead_experts (N·f_i < 0.1), concentration (fewest experts covering 50% of slots)."""
    counts_E = load_counts_E.detach().double().cpu()
    num_experts = counts_E.numel()
    total = counts_E.sum()
    if total <= 0:
        raise ValueError("routing_load_metrics needs at least one routed slot")
    fraction_E = counts_E / total
    nonzero = fraction_E[fraction_E > 0]
    entropy = -(nonzero * nonzero.log()).sum().item()
    sorted_desc = fraction_E.sort(descending=True).values
    covered = torch.cumsum(sorted_desc, 0)
    concentration = int((covered < 0.5 - 1e-12).sum().item()) + 1
    return {
        "max_load": (num_experts * fraction_E.max()).item(),
        "cv": (counts_E.std(unbiased=False) / counts_E.mean()).item(),
        "load_entropy": entropy / math.log(num_experts) if num_experts > 1 else 1.0,
        "dead_experts": float((num_experts * fraction_E < 0.1).sum().item()),
        "concentration": float(concentration),
    }
