"""Training instrumentation as callbacks: routing dashboards, router-gradient fidelity, throughput,
the run summary. Every tag is written once, at the optimizer step it measures."""

from lit_moe.callbacks.router_fidelity import RouterFidelity
from lit_moe.callbacks.routing_dashboard import RoutingDashboard
from lit_moe.callbacks.run_summary import RunSummary
from lit_moe.callbacks.throughput import Throughput

__all__ = ["RouterFidelity", "RoutingDashboard", "RunSummary", "Throughput"]
