"""Mixture-of-Experts layer with the routers of the Default-MoE line of research.

Shape legend: T tokens, D model width, E experts, K experts per token, S = T*K routing slots.

Routers (see ``../shared/spec/moe.md`` §1):
- ``topk``: y = sum_{i in A} w_i E_i(x).
- ``default``: adds sum_{i not in A} pi_i Ehat_i with EMA default vectors Ehat (buffer, detached).
- ``dense``: adds sum_{i not in A} pi_i E_i(x) - stopgrad(same): the router receives the exact dense
  gradient; the forward value and the expert-weight gradients stay those of TopK.
- ``expert_group``: adds sum_{i not in A} pi_i Ehat_i(x), Ehat_i(x) = mean over j in A(x) of the
  mean output of expert i on this step's tokens routed to both j and i (not detached).

The layer is pure math: it returns its auxiliary losses and routing statistics from ``forward``
and never updates state there. ``update_router_state`` applies the Default-MoE EMA and the
aux-loss-free bias step from statistics the caller has summed (over micro-batches and ranks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.expert_group import combine_with_group_estimate
from lit_moe.model.experts import Dispatch, SwiGLUExperts
from lit_moe.model.shared_experts import build_shared_experts
from lit_moe.model.router import Router, RouterOutput


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


@dataclass
class FidelityCapture:
    """Router input and upstream gradient of one training step, for gradient fidelity."""

    x_TD: torch.Tensor
    grad_TD: Optional[torch.Tensor] = None


class MoELayer(nn.Module):
    """Routed SwiGLU experts (+ optional shared experts) with a configurable router."""

    def __init__(self, config: MoETransformerConfig) -> None:
        super().__init__()
        self.router_name = config.router
        self.num_experts = config.num_experts
        self.top_k = config.top_k
        self.default_beta = config.default_beta
        self.default_mode = config.default_mode
        self.aux_loss_coef = config.aux_loss_coef
        self.z_loss_coef = config.z_loss_coef
        self.bias_update_rate = config.bias_update_rate
        self.backend = config.backend
        self.router = Router(config.d_model, config.num_experts, config.top_k, config.normalize_topk,
                             use_bias_balancing=config.bias_update_rate > 0)
        self.experts = SwiGLUExperts(config.num_experts, config.d_model, config.d_expert, config.backend)
        self.shared_experts = build_shared_experts(config)  # added to the routed output (or None)
        # Default-MoE default vectors Ehat (fp32, non-trainable, saved in checkpoints).
        self.register_buffer("default_vectors_ED", torch.zeros(config.num_experts, config.d_model))
        self.capture_for_fidelity = False
        self.fidelity_capture: Optional[FidelityCapture] = None

    # ------------------------------------------------------------------ forward
    def forward(self, x_BSD: torch.Tensor) -> tuple[torch.Tensor, MoEStats]:
        batch_shape, d_model = x_BSD.shape[:-1], x_BSD.shape[-1]
        x_TD = x_BSD.reshape(-1, d_model)
        routing, fused_default_TD = self._route(x_TD)
        dispatch = Dispatch.from_indices(routing.expert_idx_TK, self.num_experts)
        weight_S = routing.weights_TK.reshape(-1)[dispatch.slot_order_S]
        default_sums_ED = raw_SD = None
        if self.router_name == "expert_group":
            y_TD = self._expert_group_output(x_TD, routing, dispatch, weight_S)
        elif self.backend == "triton":
            # Fused kernels (torch production path on CPU): gather inside the GEMM tiles, scatter back
            # with the routing weights, Default-MoE sums from the epilogue; no [S, D] output is kept.
            want_sums = self.router_name == "default" and self.training
            result = self._kernels().grouped_swiglu(
                x_TD, self.experts.w_gate_EDF, self.experts.w_up_EDF, self.experts.w_down_EFD, dispatch.offsets_E,
                dispatch.token_of_slot_S, weight_S, return_sums=want_sums, slot_order_S=dispatch.slot_order_S)
            y_TD, default_sums_ED = result if want_sums else (result, None)
        else:
            raw_SD = self.experts.forward_tokens(x_TD, dispatch)
            y_TD = self._scatter_weighted(raw_SD, weight_S, dispatch, x_TD.shape[0])

        stats = self._routing_stats(routing, dispatch)
        if self.router_name == "default":
            y_TD = y_TD + self._default_term(routing, fused_default_TD).to(y_TD.dtype)
            if self.training:
                if default_sums_ED is None:
                    default_sums_ED = torch.zeros_like(self.default_vectors_ED, dtype=torch.float32).index_add(
                        0, dispatch.expert_of_slot_S, raw_SD.detach().float())
                stats.default_sums_ED = default_sums_ED
                stats.default_counts_E = dispatch.counts_E.float()
        elif self.router_name == "dense":
            complement_TD = self._dense_complement(x_TD, routing).to(y_TD.dtype)
            y_TD = y_TD + (complement_TD - complement_TD.detach())

        if self.shared_experts is not None:
            y_TD = y_TD + self.shared_experts(x_TD)
        y_TD = y_TD.to(x_BSD.dtype)
        if self.capture_for_fidelity and self.fidelity_capture is None and self.training and torch.is_grad_enabled():
            self._capture(x_TD, y_TD)  # first forward of the step only (not checkpoint recomputes)
        return y_TD.view(*batch_shape, d_model), stats

    @staticmethod
    def _kernels():
        import kernels  # noqa: PLC0415 (imported on first use of the triton backend)

        return kernels

    def _route(self, x_TD: torch.Tensor) -> tuple[RouterOutput, Optional[torch.Tensor]]:
        """Router output (and, for Default MoE on CUDA, the default term from the same fused kernel)."""
        if not self._uses_triton_kernels(x_TD):
            return self.router(x_TD), None
        router = self.router
        logits_TE = x_TD.float() @ router.weight_ED.float().t()
        bias_E = router.expert_bias_E if router.use_bias_balancing else None
        defaults_ED = self.default_vectors_ED if self.router_name == "default" else None
        probs_TE, idx_TK, weights_TK, default_TD = self._kernels().fused_routing(
            logits_TE, self.top_k, router.normalize_topk, bias_E, defaults_ED)
        return RouterOutput(logits_TE, probs_TE, idx_TK, weights_TK), default_TD

    def _default_term(self, routing: RouterOutput, fused_default_TD: Optional[torch.Tensor] = None) -> torch.Tensor:
        default_TD = fused_default_TD
        if default_TD is None:
            default_TD = routing.unselected_probs() @ self.default_vectors_ED.detach().float()
        if self.default_mode == "straight_through":
            return default_TD - default_TD.detach()
        return default_TD

    @torch.no_grad()
    def _all_expert_outputs(self, x_TD: torch.Tensor) -> list[torch.Tensor]:
        return [self.experts.forward_expert(e, x_TD) for e in range(self.num_experts)]

    def _dense_complement(self, x_TD: torch.Tensor, routing: RouterOutput) -> torch.Tensor:
        unselected_TE = routing.unselected_probs()
        complement_TD = torch.zeros_like(x_TD, dtype=torch.float32)
        for expert, out_TD in enumerate(self._all_expert_outputs(x_TD)):
            complement_TD = complement_TD + unselected_TE[:, expert : expert + 1] * out_TD.float()
        return complement_TD

    def _uses_triton_kernels(self, x_TD: torch.Tensor) -> bool:
        """The Triton kernels run (triton backend on CUDA, or forced by ``kernels.force_impl``)."""
        return self.backend == "triton" and self._kernels().resolve_impl("auto", x_TD) == "triton"

    @staticmethod
    def _scatter_weighted(raw_SD: torch.Tensor, weight_S: torch.Tensor, dispatch: Dispatch, num_tokens: int
                          ) -> torch.Tensor:
        """y_TD = sum over each token's slots of weight_s * raw_s."""
        return raw_SD.new_zeros(num_tokens, raw_SD.shape[-1]).index_add(
            0, dispatch.token_of_slot_S, raw_SD * weight_S.to(raw_SD.dtype).unsqueeze(-1))

    def _expert_group_output(self, x_TD: torch.Tensor, routing: RouterOutput, dispatch: Dispatch,
                             weight_S: torch.Tensor) -> torch.Tensor:
        """Routed term + group estimate: Triton scatter/gather kernels where they run, else one autograd
        node with a hand-written backward (``combine_with_group_estimate``)."""
        raw_SD = self.experts.forward_tokens(x_TD, dispatch)
        if not self._uses_triton_kernels(x_TD):
            return combine_with_group_estimate(raw_SD, weight_S, routing.unselected_probs(), dispatch,
                                               routing.expert_idx_TK, self.num_experts,
                                               use_grouped_mm=self.backend != "loop")
        kernels = self._kernels()
        means_EED, _ = kernels.expert_group_scatter(raw_SD, dispatch.token_of_slot_S, dispatch.expert_of_slot_S,
                                                    routing.expert_idx_TK, self.num_experts)
        estimate_TD = kernels.expert_group_gather(routing.unselected_probs(), means_EED, dispatch.token_of_slot_S,
                                                  dispatch.offsets_E, self.top_k)
        return self._scatter_weighted(raw_SD, weight_S, dispatch, x_TD.shape[0]) + estimate_TD.to(raw_SD.dtype)

    def _routing_stats(self, routing: RouterOutput, dispatch: Dispatch) -> MoEStats:
        num_tokens = routing.probs_TE.shape[0]
        load_E = dispatch.counts_E.float()
        zero = routing.probs_TE.new_zeros(())
        aux_loss = zero
        if self.aux_loss_coef > 0:
            fraction_E = load_E / (num_tokens * self.top_k)
            aux_loss = self.aux_loss_coef * self.num_experts * (fraction_E * routing.probs_TE.mean(0)).sum()
        z_loss = zero
        if self.z_loss_coef > 0:
            z_loss = self.z_loss_coef * torch.logsumexp(routing.logits_TE, dim=-1).pow(2).mean()
        with torch.no_grad():
            probs_TE = routing.probs_TE
            entropy_sum = -(probs_TE * probs_TE.clamp_min(1e-20).log()).sum()
        return MoEStats(aux_loss, z_loss, load_E, entropy_sum, num_tokens)

    def _capture(self, x_TD: torch.Tensor, y_TD: torch.Tensor) -> None:
        capture = FidelityCapture(x_TD.detach())
        self.fidelity_capture = capture

        def store_grad(grad_TD: torch.Tensor) -> None:
            capture.grad_TD = grad_TD.detach()

        y_TD.register_hook(store_grad)

    def _apply(self, fn, recurse: bool = True):
        """Keep the router state (default vectors, balancing biases) in fp32 whatever the module dtype
        (``bf16-true`` casts buffers; an EMA of small updates would stall in bf16)."""
        super()._apply(fn, recurse)
        self.default_vectors_ED = self.default_vectors_ED.float()
        self.router.expert_bias_E = self.router.expert_bias_E.float()
        return self

    # ------------------------------------------------------------- state update
    @torch.no_grad()
    def update_router_state(self, stats: MoEStats) -> None:
        """Apply one optimizer step's Default-MoE EMA and aux-loss-free bias update.

        ``stats`` must hold sums over every micro-batch of the step and every data-parallel rank,
        so that all ranks compute bit-identical state.
        """
        if self.router_name == "default" and stats.default_sums_ED is not None:
            counts_E = stats.default_counts_E
            touched_E = counts_E > 0
            means_ED = stats.default_sums_ED / counts_E.clamp(min=1).unsqueeze(-1)
            ema_ED = self.default_beta * self.default_vectors_ED + (1 - self.default_beta) * means_ED
            self.default_vectors_ED.copy_(torch.where(touched_E.unsqueeze(-1), ema_ED, self.default_vectors_ED))
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
