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

# The paper's four first (the order the CLI lists them in), then any added rule, alphabetically.
_ORDER = ["topk", "default", "dense", "expert_group"]
_found = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")
for _name in [n for n in _ORDER if n in _found] + [n for n in _found if n not in _ORDER]:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["ROUTING_RULES", "MissingExpertEstimator", "RoutingRule"]
