"""Mixture-of-Experts layer: route -> dispatch -> routing rule (backend inside) -> shared experts.

Shape legend: T tokens, D model width, E experts, K experts per token, S = T*K routing slots.

The router semantics (``topk``, ``default``, ``dense``, ``expert_group``; spec §1) are
``lit_moe.model.routers`` objects and the expert computation a ``lit_moe.model.backends`` object,
both chosen once here, at construction. The layer is pure math: it returns its auxiliary losses
and routing statistics from ``forward`` and never updates state there; ``update_router_state``
applies the rule's state update (the Default-MoE EMA) and the aux-loss-free bias step from
statistics the caller has summed over micro-batches and ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.experts import Dispatch, SwiGLUExperts
from lit_moe.model.router import Router, RouterOutput
from lit_moe.model.routers import ROUTING_RULES, RoutingRule
from lit_moe.model.shared_experts import build_shared_experts


@dataclass
class MoEStats:
    """What one MoE layer's forward returns besides its output."""

    aux_loss: torch.Tensor  # Switch load-balancing loss, already multiplied by its coefficient
    z_loss: torch.Tensor  # router z-loss, already multiplied by its coefficient
    load_counts_E: torch.Tensor  # slots assigned to each expert (detached, fp32)
    router_entropy_sum: torch.Tensor  # sum over tokens of H(pi_t) (detached)
    num_tokens: int
    default_sums_ED: Optional[torch.Tensor] = None  # sum of raw outputs of routed tokens
    default_counts_E: Optional[torch.Tensor] = None  # tokens routed to each expert


class MoELayer(nn.Module):
    """Routed SwiGLU experts (+ optional shared experts) with a configurable routing rule."""

    def __init__(self, config: MoETransformerConfig) -> None:
        super().__init__()
        self.num_experts = config.num_experts
        self.top_k = config.top_k
        self.aux_loss_coef = config.aux_loss_coef
        self.z_loss_coef = config.z_loss_coef
        self.bias_update_rate = config.bias_update_rate
        self.rule: RoutingRule = ROUTING_RULES[config.router](config)
        self.experts = SwiGLUExperts(config.num_experts, config.d_model, config.d_expert, config.backend)
        self.router = Router(config.d_model, config.num_experts, config.top_k, config.normalize_topk,
                             use_bias_balancing=config.bias_update_rate > 0, score_function=config.score_function,
                             backend=self.experts.backend)
        self.shared_experts = build_shared_experts(config)  # added to the routed output (or None)
        # Default-MoE default vectors Ehat (fp32, non-trainable, saved in checkpoints for every rule).
        self.register_buffer("default_vectors_ED", torch.zeros(config.num_experts, config.d_model))

    @property
    def router_name(self) -> str:
        return self.rule.name

    def forward(self, x_BSD: torch.Tensor) -> tuple[torch.Tensor, MoEStats]:
        batch_shape, d_model = x_BSD.shape[:-1], x_BSD.shape[-1]
        x_TD = x_BSD.reshape(-1, d_model)
        routing = self.router(x_TD, self.default_vectors_ED if self.rule.uses_default_vectors else None)
        dispatch = Dispatch.from_indices(routing.expert_idx_TK, self.num_experts)
        weight_S = self.rule.slot_weights(routing).reshape(-1)[dispatch.slot_order_S]
        y_TD, sums_ED = self.rule.output(self, x_TD, routing, dispatch, weight_S)
        stats = self._routing_stats(routing, dispatch)
        if sums_ED is not None:
            stats.default_sums_ED, stats.default_counts_E = sums_ED, dispatch.counts_E.float()
        if self.shared_experts is not None:
            y_TD = y_TD + self.shared_experts(x_TD)
        return y_TD.to(x_BSD.dtype).view(*batch_shape, d_model), stats

    def _routing_stats(self, routing: RouterOutput, dispatch: Dispatch) -> MoEStats:
        num_tokens = routing.probs_TE.shape[0]
        load_E = dispatch.counts_E.float()
        distribution_TE = self.router.score_function.distribution(routing.probs_TE)
        zero = routing.probs_TE.new_zeros(())
        aux_loss = zero
        if self.aux_loss_coef > 0:
            fraction_E = load_E / (num_tokens * self.top_k)
            aux_loss = self.aux_loss_coef * self.num_experts * (fraction_E * distribution_TE.mean(0)).sum()
        z_loss = zero
        if self.z_loss_coef > 0:
            z_loss = self.z_loss_coef * torch.logsumexp(routing.logits_TE, dim=-1).pow(2).mean()
        with torch.no_grad():
            entropy_sum = -(distribution_TE * distribution_TE.clamp_min(1e-20).log()).sum()
        return MoEStats(aux_loss, z_loss, load_E, entropy_sum, num_tokens)

    def _apply(self, fn, recurse: bool = True):
        """Keep the router state (default vectors, balancing biases) in fp32 whatever the module dtype
        (``bf16-true`` casts buffers; an EMA of small updates would stall in bf16)."""
        super()._apply(fn, recurse)
        self.default_vectors_ED = self.default_vectors_ED.float()
        self.router.expert_bias_E = self.router.expert_bias_E.float()
        return self

    @torch.no_grad()
    def reset_router_state(self) -> None:
        """Zero the default vectors and the balancing biases (fresh initialisation)."""
        self.default_vectors_ED.zero_()
        self.router.expert_bias_E.zero_()

    @torch.no_grad()
    def update_router_state(self, stats: MoEStats) -> None:
        """Apply one optimizer step's rule state update (Default-MoE EMA) and aux-loss-free bias step.

        ``stats`` must hold sums over every micro-batch of the step and every data-parallel rank,
        so that all ranks compute bit-identical state.
        """
        self.rule.update_state(self, stats)
        if self.bias_update_rate > 0:
            self.router.update_bias(stats.load_counts_E, self.bias_update_rate)


def sum_stats(stats_list: list[MoEStats], all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> MoEStats:
    """Sum detached statistics of one layer over micro-batches (and ranks, via ``all_reduce``)."""
    first = stats_list[0]
    has_default = first.default_sums_ED is not None
    load_E = sum(s.load_counts_E for s in stats_list)
    entropy = sum(s.router_entropy_sum for s in stats_list)
    tokens = torch.tensor(float(sum(s.num_tokens for s in stats_list)), device=load_E.device)
    aux = sum(s.aux_loss.detach() for s in stats_list) / len(stats_list)
    z = sum(s.z_loss.detach() for s in stats_list) / len(stats_list)
    sums_ED = sum(s.default_sums_ED for s in stats_list) if has_default else None
    counts_E = sum(s.default_counts_E for s in stats_list) if has_default else None
    if all_reduce is not None:
        load_E, entropy, tokens = all_reduce(load_E), all_reduce(entropy), all_reduce(tokens)
        if has_default:
            sums_ED, counts_E = all_reduce(sums_ED), all_reduce(counts_E)
    return MoEStats(aux, z, load_E, entropy, int(tokens.item()), sums_ED, counts_E)
