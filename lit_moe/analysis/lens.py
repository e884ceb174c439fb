"""MoE Lens (arXiv 2603.05806): routing shares, early decoding with the top-m experts, top-m perplexity.

Shape legend: B batch, S sequence, T = B*S tokens, D model width, E experts, K experts per token,
M = K early-decoding depths (m = 1..K), R = 2 gate variants (0: kept gates as they are,
1: kept gates renormalised), V vocabulary.

How the restricted layer output is formed (identical for every router). The layer's own output is
y = routed + extra, routed = sum_{j<=K} g_(j) E_(j)(x) over the K selected experts sorted by gate
weight g_(1) >= ... >= g_(K), and extra = everything else the layer adds: shared experts, the
Default-MoE / expert-group missing-expert term, the zero-valued straight-through term of ``dense``.
The extra is kept unchanged (it is not a routed expert), and only the routed term is restricted:

    y_m = y + (c_m * routed_m - routed_K),  routed_m = sum_{j<=m} g_(j) E_(j)(x),

with c_m = 1 (``plain``) or c_m = (sum_{j<=K} g_(j)) / (sum_{j<=m} g_(j)) (``renormalised``: the
kept gates carry the weight of all K; for routers with ``normalize_topk`` that is renormalising them
to sum 1). At m = K the correction is exactly zero, so y_K is the layer's output bit for bit and
the logits are the model's. H^l_m = h^l + y_m is the residual stream after block l (h^l: the
residual entering the MoE sub-layer), decoded with the logit lens W_U FinalNorm(H^l_m).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from lit_moe.model import MoETransformer
from lit_moe.model.moe_layer import MoELayer

VARIANTS = ("plain", "renormalised")


# ----------------------------------------------------------------------------- routing shares
def routing_shares(expert_idx_TK: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Share of routing slots per expert: assignments / (T * K); the uniform share is 1/E."""
    counts_E = torch.bincount(expert_idx_TK.reshape(-1), minlength=num_experts).double()
    return counts_E / max(expert_idx_TK.numel(), 1)


def coverage_count(shares_E: torch.Tensor, fraction: float = 0.5) -> int:
    """Fewest experts whose shares sum to at least ``fraction`` of the routing decisions."""
    total = float(shares_E.sum())
    if total <= 0:
        return 0
    cumulative_E = torch.cumsum(shares_E.double().sort(descending=True).values / total, 0)
    return int((cumulative_E < fraction - 1e-9).sum()) + 1


# ----------------------------------------------------------------------------- restricted outputs
@dataclass
class RoutedTerms:
    """The routed term of one MoE layer call, cumulated over the gate-sorted experts."""

    expert_idx_TK: torch.Tensor  # selected experts, sorted by gate weight (descending)
    cumulative_TMD: torch.Tensor  # routed_m for m = 1..K (fp32)
    gate_sums_TM: torch.Tensor  # sum_{j<=m} g_(j)

    def correction(self, m: int, renormalise: bool) -> torch.Tensor:
        """c_m routed_m - routed_K [T, D]; exactly zero at m = K."""
        top_k = self.cumulative_TMD.shape[1]
        routed_K = self.cumulative_TMD[:, top_k - 1]
        routed_m = self.cumulative_TMD[:, m - 1]
        if renormalise:
            scale_T = self.gate_sums_TM[:, top_k - 1] / self.gate_sums_TM[:, m - 1].clamp_min(1e-20)
            routed_m = routed_m * scale_T.unsqueeze(-1)
        return routed_m - routed_K


def routed_terms(layer: MoELayer, x_TD: torch.Tensor) -> RoutedTerms:
    """Recompute the layer's routing on its input and each selected expert's raw output."""
    routing = layer.router(x_TD)
    order_TK = routing.weights_TK.argsort(dim=-1, descending=True, stable=True)
    expert_idx_TK = routing.expert_idx_TK.gather(1, order_TK)
    gates_TK = routing.weights_TK.gather(1, order_TK).float()
    num_tokens, top_k = expert_idx_TK.shape
    raw_TKD = torch.zeros(num_tokens, top_k, x_TD.shape[-1], dtype=torch.float32, device=x_TD.device)
    for expert in torch.unique(expert_idx_TK).tolist():
        tokens_N, slots_N = (expert_idx_TK == expert).nonzero(as_tuple=True)
        raw_TKD[tokens_N, slots_N] = layer.experts.forward_expert(expert, x_TD[tokens_N]).float()
    cumulative_TMD = torch.cumsum(gates_TK.unsqueeze(-1) * raw_TKD, dim=1)
    return RoutedTerms(expert_idx_TK, cumulative_TMD, torch.cumsum(gates_TK, dim=1))


def restricted_output(y_TD: torch.Tensor, terms: RoutedTerms, m: int, renormalise: bool) -> torch.Tensor:
    """The layer output with only its top-m routed experts (``y`` itself at m = K)."""
    return (y_TD.float() + terms.correction(min(m, terms.cumulative_TMD.shape[1]), renormalise)).to(y_TD.dtype)


@contextlib.contextmanager
def restrict_to_top_m(model: MoETransformer, m: int, renormalise: bool) -> Iterator[None]:
    """Every MoE layer of ``model`` keeps only its top-m routed experts inside the block."""

    def hook(layer, args, output):
        x_BSD = args[0]
        y_BSD, stats = output
        x_TD = x_BSD.reshape(-1, x_BSD.shape[-1])
        y_TD = restricted_output(y_BSD.reshape(-1, y_BSD.shape[-1]), routed_terms(layer, x_TD), m, renormalise)
        return y_TD.view_as(y_BSD), stats

    handles = [layer.register_forward_hook(hook) for layer in model.moe_layers().values()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------- one lens pass
@dataclass
class LayerLens:
    """Early-decoding results of one MoE layer on one batch."""

    expert_idx_TK: torch.Tensor
    hidden_RMTD: torch.Tensor  # H_m for both gate variants (model dtype)
    cos_RMT: torch.Tensor  # cos(H_m, H_K)
    top1_RMT: torch.Tensor  # logit-lens top-1 token of H_m


@dataclass
class LensPass:
    logits_BSV: torch.Tensor
    layers: dict[int, LayerLens]


def lens_forward(model: MoETransformer, tokens_BS: torch.Tensor, keep_hidden: bool = False) -> LensPass:
    """One forward of the unmodified model that records, at every MoE layer, its routing and the
    early-decoding hidden states H_m (m = 1..K, both gate variants) with their logit-lens top-1."""
    moe_layers = model.moe_layers()
    residual: dict[int, torch.Tensor] = {}
    records: dict[int, LayerLens] = {}
    handles = []

    def pre_mlp_hook(index):
        def hook(module, args):
            residual[index] = args[0]
        return hook

    def moe_hook(index):
        def hook(layer, args, output):
            x_BSD, (y_BSD, _) = args[0], output
            d_model = x_BSD.shape[-1]
            terms = routed_terms(layer, x_BSD.reshape(-1, d_model))
            h_TD = residual.pop(index).reshape(-1, d_model)
            y_TD = y_BSD.reshape(-1, d_model)
            top_k = terms.cumulative_TMD.shape[1]
            hidden_RMTD = torch.stack([
                torch.stack([h_TD + restricted_output(y_TD, terms, m, renormalise) for m in range(1, top_k + 1)])
                for renormalise in (False, True)])
            full_TD = hidden_RMTD[0, top_k - 1]
            cos_RMT = F.cosine_similarity(hidden_RMTD.float(), full_TD.float().expand_as(hidden_RMTD), dim=-1)
            # one [T, V] logit-lens decode at a time (a real vocabulary makes [R, M, T, V] large)
            top1_RMT = torch.stack([torch.stack([model.lm_head(model.final_norm(hidden_TD)).argmax(-1)
                                                 for hidden_TD in hidden_MTD]) for hidden_MTD in hidden_RMTD])
            records[index] = LayerLens(terms.expert_idx_TK, hidden_RMTD if keep_hidden else hidden_RMTD[:0],
                                       cos_RMT, top1_RMT)
        return hook

    try:
        for index, layer in moe_layers.items():
            handles.append(model.blocks[index].mlp_norm.register_forward_pre_hook(pre_mlp_hook(index)))
            handles.append(layer.register_forward_hook(moe_hook(index)))
        logits_BSV = model(tokens_BS).logits_BSV
    finally:
        for handle in handles:
            handle.remove()
    return LensPass(logits_BSV, records)


def sequence_nll(logits_BSV: torch.Tensor, targets_BS: torch.Tensor) -> torch.Tensor:
    """Summed next-token negative log-likelihood (fp32)."""
    return F.cross_entropy(logits_BSV.float().flatten(0, 1), targets_BS.flatten(), reduction="sum")


def perplexity(nll_sum: float, num_tokens: int) -> float:
    return math.exp(nll_sum / max(num_tokens, 1))
