"""Default-MoE statistics kernel (per-expert sums and counts) vs reference and the layer's formula.

Shape legend: S routing slots sorted by expert, D model width, E experts.
"""

from __future__ import annotations

import pytest
import torch

from kernels import default_stats, default_stats_reference
from tests.kernels.helpers import CASES, assert_close, random_routing

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("case", list(CASES))
def test_default_stats_matches_reference(case):
    num_tokens, d_model, num_experts, top_k, _, empty = CASES[case]
    routing = random_routing(num_tokens, num_experts, top_k, empty, DEVICE)
    raw_SD = torch.randn(routing.token_of_slot_S.shape[0], d_model, device=DEVICE)
    sums_ED, counts_E = default_stats(raw_SD, routing.offsets_E, impl="triton")
    ref_sums, ref_counts = default_stats_reference(raw_SD, routing.offsets_E)
    assert_close(sums_ED, ref_sums, rtol=1e-6)
    assert torch.equal(counts_E, ref_counts)
    assert torch.equal(counts_E, routing.counts_E.float())
    # the MoE layer's formula: index_add over the expert of each slot
    layer = torch.zeros(num_experts, d_model, device=DEVICE).index_add(0, routing.expert_of_slot_S, raw_SD)
    assert_close(sums_ED, layer, rtol=1e-6)
    for expert in empty:
        assert counts_E[expert] == 0 and sums_ED[expert].abs().max() == 0


def test_default_stats_bf16_accumulates_in_fp32():
    routing = random_routing(70, 5, 3, (2,), DEVICE)
    raw_SD = torch.randn(routing.token_of_slot_S.shape[0], 72, device=DEVICE).bfloat16()
    sums_ED, _ = default_stats(raw_SD, routing.offsets_E, impl="triton")
    assert sums_ED.dtype == torch.float32
    assert_close(sums_ED, default_stats_reference(raw_SD, routing.offsets_E)[0], rtol=1e-6)
