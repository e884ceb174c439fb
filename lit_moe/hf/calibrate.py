"""Default-MoE vectors of a pretrained model from a calibration pass instead of zero.

Shape legend: E experts, D model width.

Ehat_i = mean of expert i's raw output E_i(x) over the tokens routed to it in the first N training
batches (no gradient, weights unchanged), summed over data-parallel ranks. Why not zero: a pretrained
expert's mean output is far from 0, so zero defaults would bias the first steps' output by
-sum_{i not in A} pi_i mean(E_i) and the EMA (beta=0.9) would need tens of steps to catch up; the
calibrated value is what the EMA would converge to on this data with fixed weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from lit_moe.model import MoETransformer


@torch.no_grad()
def calibrate_default_vectors(model: MoETransformer, batches: Iterable[torch.Tensor],
                              all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """Set every Default-MoE layer's ``default_vectors_ED`` to the mean raw expert outputs over
    ``batches`` (token tensors [B, S]); returns the number of batches used. Experts that received
    no token keep their current vector."""
    layers = {i: layer for i, layer in model.moe_layers().items() if layer.router_name == "default"}
    if not layers:
        return 0
    sums = {i: torch.zeros_like(layer.default_vectors_ED, dtype=torch.float32) for i, layer in layers.items()}
    counts = {i: torch.zeros(layer.num_experts, device=layer.default_vectors_ED.device) for i, layer in layers.items()}
    was_training = model.training
    model.train()  # the MoE layers return the raw-output sums only in training mode
    used = 0
    try:
        for tokens_BS in batches:
            out = model(tokens_BS)
            for index in layers:
                stats = out.moe_stats[index]
                sums[index] += stats.default_sums_ED.float()
                counts[index] += stats.default_counts_E.float()
            used += 1
    finally:
        model.train(was_training)
    for index, layer in layers.items():
        sums_ED, counts_E = sums[index], counts[index]
        if all_reduce is not None:
            sums_ED, counts_E = all_reduce(sums_ED), all_reduce(counts_E)
        means_ED = sums_ED / counts_E.clamp(min=1).unsqueeze(-1)
        vectors = layer.default_vectors_ED
        vectors.copy_(torch.where((counts_E > 0).unsqueeze(-1), means_ED.to(vectors.device), vectors))
    return used
