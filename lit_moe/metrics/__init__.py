from lit_moe.metrics.gradient_fidelity import FidelityResult, gradient_fidelity, router_weight_gradients
from lit_moe.metrics.routing import routing_load_metrics

__all__ = ["FidelityResult", "gradient_fidelity", "router_weight_gradients", "routing_load_metrics"]
