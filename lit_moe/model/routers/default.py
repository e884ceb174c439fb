"""Default MoE (spec §1.2): the missing experts contribute their EMA "default" outputs Ehat (detached).

    y = sum_{i in A} w_i E_i(x) + sum_{i not in A} pi_i Ehat_i            (mode ``forward``)
    y = sum_{i in A} w_i E_i(x) + d - stopgrad(d), d = sum_{i not in A} pi_i Ehat_i   (``straight_through``)

Ehat_i <- beta Ehat_i + (1 - beta) m_i once per optimizer step, m_i the mean raw output of expert i
over the step's tokens routed to it (summed over micro-batches and ranks by the caller); experts
that got no token keep Ehat_i. Eval forwards produce no statistics. With ``default_ema_start:
first_mean`` an expert's first update sets Ehat_i = m_i (no warm-up from zero).
"""

from __future__ import annotations

import torch

from lit_moe.model.routers.base import MissingExpertEstimator


class DefaultMoE(MissingExpertEstimator):
    name = "default"
    uses_default_vectors = True

    def __init__(self, config) -> None:
        super().__init__(config)
        self.beta = config.default_beta
        self.straight_through = config.default_mode == "straight_through"
        self.start_from_first_mean = config.default_ema_start == "first_mean"

    def output(self, layer, x_TD, routing, dispatch, weight_S):
        y_TD, sums_ED = layer.experts.combine(x_TD, dispatch, weight_S, want_sums=layer.training)
        default_TD = routing.default_TD
        if default_TD is None:
            default_TD = routing.unselected_probs() @ layer.default_vectors_ED.detach().float()
        if self.straight_through:
            default_TD = default_TD - default_TD.detach()
        return y_TD + default_TD.to(y_TD.dtype), sums_ED

    @torch.no_grad()
    def update_state(self, layer, stats) -> None:
        if stats.default_sums_ED is None:
            return
        counts_E = stats.default_counts_E
        means_ED = stats.default_sums_ED / counts_E.clamp(min=1).unsqueeze(-1)
        defaults_ED = layer.default_vectors_ED
        ema_ED = self.beta * defaults_ED + (1 - self.beta) * means_ED
        if self.start_from_first_mean:
            never_updated_E = (defaults_ED == 0).all(-1)
            ema_ED = torch.where(never_updated_E.unsqueeze(-1), means_ED, ema_ED)
        defaults_ED.copy_(torch.where((counts_E > 0).unsqueeze(-1), ema_ED, defaults_ED))
