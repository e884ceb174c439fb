"""The routing-rule protocol every router of the Default-MoE family implements.

Shape legend: T tokens, D model width, E experts, K experts per token, S = T*K expert-sorted slots.

Every rule's layer output is the TopK term plus, optionally, a term for the missing experts:

    y_t = sum_{i in A_t} w_ti E_i(x_t)  +  sum_{i not in A_t} pi_ti Ehat_i(x_t)

with w the mixing weights of the selected experts (pi_A, or pi_A / sum pi_A under
``normalize_topk``). The router gradient of a rule is the autograd gradient of its output; the
gradient-fidelity metric differentiates the layer's own forward, so what a rule trains with and
what the metric measures are one implementation.

Under ``normalize_topk``, rules with a missing-expert term (``MissingExpertEstimator``) estimate the
all-experts mixture sum_i pi_i E_i(x) whose truncation the layer computes: the selected term keeps
its renormalised forward value w, but its router gradient is taken through pi_A (a straight-through
weight w + pi_A - stopgrad(pi_A) with w detached), so their router gradient is
grad sum_{i in A} pi_i <g, E_i> + grad sum_{i not in A} pi_i <g, Ehat_i>: the dense gradient with
Ehat in place of the missing outputs. Without normalisation w = pi_A and this changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Optional

import torch

if TYPE_CHECKING:
    from lit_moe.model.config import MoETransformerConfig
    from lit_moe.model.grouped import Dispatch
    from lit_moe.model.moe_layer import MoELayer, MoEStats
    from lit_moe.model.router import RouterOutput

ROUTING_RULES: dict[str, type["RoutingRule"]] = {}


class RoutingRule:
    """A router's semantics: its slot weights, its output (missing-expert term included), its state update.

    Args:
        config: The model config (``normalize_topk``, ``top_k`` and the rule's own fields).
    """

    name: ClassVar[str]
    uses_default_vectors: ClassVar[bool] = False  # reads MoELayer.default_vectors_ED

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            ROUTING_RULES[cls.name] = cls

    def __init__(self, config: "MoETransformerConfig") -> None:
        self.normalize_topk = config.normalize_topk
        self.top_k = config.top_k

    def slot_weights(self, routing: "RouterOutput") -> torch.Tensor:
        """Mixing weights of the selected experts, [T, K]."""
        return routing.weights_TK

    def output(self, layer: "MoELayer", x_TD: torch.Tensor, routing: "RouterOutput", dispatch: "Dispatch",
               weight_S: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(y_TD, per-expert raw-output sums for the state update or None)."""
        y_TD, _ = layer.experts.combine(x_TD, dispatch, weight_S)
        return y_TD, None

    def update_state(self, layer: "MoELayer", stats: "MoEStats") -> None:
        """Once per optimizer step, from statistics summed over micro-batches and ranks."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize_topk={self.normalize_topk})"


class MissingExpertEstimator(RoutingRule):
    """Base of the rules that add a missing-expert term (see the module docstring for normalisation)."""

    def slot_weights(self, routing: "RouterOutput") -> torch.Tensor:
        if not self.normalize_topk:
            return routing.weights_TK
        selected_TK = routing.selected_probs()
        return routing.weights_TK.detach() + (selected_TK - selected_TK.detach())
