"""Routing rules, backends and score functions are chosen once, from registries: a new rule is one
class in one file, and the old backend name still works (with a warning)."""

from __future__ import annotations

import pytest
import torch

from lit_moe.model import MoELayer, MoETransformerConfig
from lit_moe.model.backends import BACKENDS
from lit_moe.model.routers import ROUTING_RULES, RoutingRule
from lit_moe.model.scoring import SCORE_FUNCTIONS


def test_a_new_rule_is_one_subclass_and_the_layer_uses_it():
    class ScaledTopK(RoutingRule):  # what a file lit_moe/model/routers/scaled_topk.py would hold
        name = "test_scaled_topk"

        def output(self, layer, x_TD, routing, dispatch, weight_S):
            y_TD, _ = layer.experts.combine(x_TD, dispatch, weight_S)
            return 2 * y_TD, None

    try:
        config = dict(vocab_size=8, d_model=16, n_heads=2, num_experts=4, top_k=2, d_expert=8)
        torch.manual_seed(0)
        custom = MoELayer(MoETransformerConfig(router="test_scaled_topk", **config))
        torch.manual_seed(0)
        topk = MoELayer(MoETransformerConfig(router="topk", **config))
        x_TD = torch.randn(5, 16)
        torch.testing.assert_close(custom(x_TD)[0], 2 * topk(x_TD)[0])
        assert custom.router_name == "test_scaled_topk"
    finally:
        ROUTING_RULES.pop("test_scaled_topk", None)


def test_registries_hold_the_shipped_choices():
    assert list(ROUTING_RULES)[:4] == ["topk", "default", "dense", "expert_group"]
    assert set(BACKENDS) == {"loop", "grouped_mm", "fused"}
    assert set(SCORE_FUNCTIONS) == {"softmax", "sigmoid"}


def test_triton_backend_name_is_a_deprecated_alias_of_fused():
    with pytest.warns(FutureWarning, match="use 'fused'"):
        config = MoETransformerConfig(vocab_size=8, backend="triton")
    assert config.backend == "fused"
    assert MoELayer(config).experts.backend.name == "fused"


def test_model_modules_hold_no_training_side_state():
    layer = MoELayer(MoETransformerConfig(vocab_size=8, router="default"))
    names = set(vars(layer)) | set(vars(layer.router))
    assert not {n for n in names if "capture" in n or "fidelity" in n or "checkpoint" in n}
