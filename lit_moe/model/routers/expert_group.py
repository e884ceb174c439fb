"""Expert-group approximation (spec §1.4): a missing expert's output is estimated from this step's
tokens that share a routed expert, in the forward pass and not detached.

    y_t = sum_{i in A_t} w_ti E_i(x_t) + sum_{i not in A_t} pi_ti (1/K) sum_{j in A_t} mu[j, i]

mu[j, i] = mean of E_i over the tokens routed to both j and i. The Triton scatter/gather kernels run
where the backend runs Triton; elsewhere one autograd node with a hand-written backward
(``lit_moe.model.expert_group.combine_with_group_estimate``).
"""

from __future__ import annotations

from kernels import expert_group_gather, expert_group_scatter
from lit_moe.model.backends import scatter_weighted
from lit_moe.model.expert_group import combine_with_group_estimate
from lit_moe.model.routers.base import MissingExpertEstimator


class ExpertGroup(MissingExpertEstimator):
    name = "expert_group"

    def output(self, layer, x_TD, routing, dispatch, weight_S):
        experts = layer.experts
        raw_SD = experts.raw(x_TD, dispatch)
        if not experts.backend.runs_triton(x_TD):
            y_TD = combine_with_group_estimate(raw_SD, weight_S, routing.unselected_probs(), dispatch,
                                               routing.expert_idx_TK, layer.num_experts,
                                               use_grouped_mm=experts.backend.use_grouped_mm)
            return y_TD, None
        means_EED, _ = expert_group_scatter(raw_SD, dispatch.token_of_slot_S, dispatch.expert_of_slot_S,
                                            routing.expert_idx_TK, layer.num_experts)
        estimate_TD = expert_group_gather(routing.unselected_probs(), means_EED, dispatch.token_of_slot_S,
                                          dispatch.offsets_E, self.top_k)
        return scatter_weighted(raw_SD, weight_S, dispatch, x_TD.shape[0]) + estimate_TD.to(raw_SD.dtype), None
