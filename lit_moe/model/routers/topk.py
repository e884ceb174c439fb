"""TopK (spec §1.1): y = sum_{i in A} w_i E_i(x); unselected experts get no signal from the token."""

from lit_moe.model.routers.base import RoutingRule


class TopK(RoutingRule):
    name = "topk"
