"""Routing-load metrics on uniform / one-hot / permuted loads (spec §2)."""

from __future__ import annotations

import math

import pytest
import torch

from lit_moe.metrics.routing import routing_load_metrics


@pytest.mark.parametrize("num_experts", [2, 8, 64])
def test_uniform_load(num_experts):
    metrics = routing_load_metrics(torch.full((num_experts,), 12.0))
    assert metrics["max_load"] == pytest.approx(1.0)
    assert metrics["cv"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["load_entropy"] == pytest.approx(1.0)
    assert metrics["dead_experts"] == 0
    assert metrics["concentration"] == math.ceil(num_experts / 2)


@pytest.mark.parametrize("num_experts", [2, 8, 64])
def test_one_hot_load(num_experts):
    counts = torch.zeros(num_experts)
    counts[num_experts // 3] = 100.0
    metrics = routing_load_metrics(counts)
    assert metrics["max_load"] == pytest.approx(num_experts)
    assert metrics["load_entropy"] == pytest.approx(0.0, abs=1e-12)
    assert metrics["cv"] == pytest.approx(math.sqrt(num_experts - 1))
    assert metrics["dead_experts"] == num_experts - 1
    assert metrics["concentration"] == 1


def test_known_skewed_load():
    counts = torch.tensor([6.0, 2.0, 1.0, 1.0])  # f = .6 .2 .1 .1
    metrics = routing_load_metrics(counts)
    assert metrics["max_load"] == pytest.approx(2.4)
    assert metrics["cv"] == pytest.approx(counts.std(unbiased=False).item() / 2.5)
    entropy = -sum(f * math.log(f) for f in (0.6, 0.2, 0.1, 0.1)) / math.log(4)
    assert metrics["load_entropy"] == pytest.approx(entropy)
    assert metrics["dead_experts"] == 0  # N*f = 0.4 >= 0.1
    assert metrics["concentration"] == 1  # 60% on one expert


def test_invariant_to_permutation():
    torch.manual_seed(0)
    counts = torch.randint(0, 50, (16,)).float()
    reference = routing_load_metrics(counts)
    for _ in range(5):
        permuted = routing_load_metrics(counts[torch.randperm(16)])
        for name, value in reference.items():
            assert permuted[name] == pytest.approx(value)
