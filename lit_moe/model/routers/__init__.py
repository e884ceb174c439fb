"""Router semantics as objects: one file per rule, found automatically.

A ``RoutingRule`` decides what a MoE layer does about the experts a token did NOT select: nothing
(``topk``), EMA default outputs (``default``), the true outputs behind a straight-through
(``dense``), or an estimate from tokens that share an expert (``expert_group``). Adding a rule means
adding one file here that defines a ``RoutingRule`` subclass with a ``name``: it becomes a valid
``MoETransformerConfig.router`` value.
"""

import importlib
import pkgutil

from lit_moe.model.routers.base import ROUTING_RULES, MissingExpertEstimator, RoutingRule

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ROUTING_RULES", "MissingExpertEstimator", "RoutingRule"]
