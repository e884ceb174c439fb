"""Dense straight-through reference (spec §1.3): every expert on every token, for the router only.

    y = sum_{i in A} w_i E_i(x) + c - stopgrad(c),   c = sum_{i not in A} pi_i stopgrad(E_i(x))

The forward value and the expert-weight gradients are TopK's; the router receives the exact
gradient of the all-experts mixture sum_i pi_i E_i(x) (for both ``normalize_topk`` values, through
the estimator's straight-through slot weights). Adding only the missing experts (not the literal
y_topk + y_dense - stopgrad(y_dense)) avoids double-counting the selected experts, so K = N gives
TopK exactly. Costs N/K times the expert compute.
"""

from __future__ import annotations

import torch

from lit_moe.model.routers.base import MissingExpertEstimator


class DenseReference(MissingExpertEstimator):
    name = "dense"

    def output(self, layer, x_TD, routing, dispatch, weight_S):
        y_TD, _ = layer.experts.combine(x_TD, dispatch, weight_S)
        unselected_TE = routing.unselected_probs()
        complement_TD = torch.zeros_like(x_TD, dtype=torch.float32)
        with torch.no_grad():
            outputs = [layer.experts.forward_expert(e, x_TD).float() for e in range(layer.num_experts)]
        for expert, out_TD in enumerate(outputs):
            complement_TD = complement_TD + unselected_TE[:, expert:expert + 1] * out_TD
        complement_TD = complement_TD.to(y_TD.dtype)
        return y_TD + (complement_TD - complement_TD.detach()), None
