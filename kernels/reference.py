"""The one pure-torch oracle per op of this package (autograd by torch; tests compare every kernel and
every production path with these).

Shape legend: T tokens, D model width, E experts, K experts per token, F expert hidden width,
S = T*K routing slots sorted by expert (``offsets_E``: int32 cumulative end offsets).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


# ------------------------------------------------------------------------------- routing
def select_experts(logits_TE: torch.Tensor, probs_TE: torch.Tensor, bias_E: Optional[torch.Tensor], top_k: int,
                   normalize_topk: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-K of ``probs + bias`` (the bias only steers the selection), weighted by the unbiased softmax.

    With ``normalize_topk`` the weights pi_i / sum_{j in A} pi_j are computed as the softmax of the
    selected logits (the same value), so unselected logits get exactly zero gradient through them.
    The router of ``lit_moe`` and ``fused_routing_reference`` both select with this function.
    """
    scores_TE = probs_TE.detach()
    if bias_E is not None:
        scores_TE = scores_TE + bias_E.float()
    expert_idx_TK = scores_TE.topk(top_k, dim=-1).indices
    if normalize_topk:
        weights_TK = torch.softmax(logits_TE.gather(1, expert_idx_TK), dim=-1)
    else:
        weights_TK = probs_TE.gather(1, expert_idx_TK)
    return expert_idx_TK, weights_TK


def fused_routing_reference(logits_TE: torch.Tensor, top_k: int, normalize_topk: bool = False,
                            bias_E: Optional[torch.Tensor] = None, default_vectors_ED: Optional[torch.Tensor] = None):
    """Softmax + top-K (+ Default-MoE default term): (probs_TE, idx_TK, weights_TK, default_TD or None)."""
    logits_TE = logits_TE.float()
    probs_TE = torch.softmax(logits_TE, dim=-1)
    idx_TK, weights_TK = select_experts(logits_TE, probs_TE, bias_E, top_k, normalize_topk)
    default_TD = None
    if default_vectors_ED is not None:
        default_TD = probs_TE.scatter(1, idx_TK, 0.0) @ default_vectors_ED.detach().float()
    return probs_TE, idx_TK, weights_TK, default_TD


# ------------------------------------------------------------------------ grouped SwiGLU
def grouped_swiglu_reference(x, w_gate_EDF, w_up_EDF, w_down_EFD, offsets_E, token_of_slot_S=None,
                             weight_S=None, return_sums: bool = False):
    """Per-expert SwiGLU loop over expert-sorted slots (modes as in ``kernels.grouped_swiglu``)."""
    x_SD = x[token_of_slot_S] if token_of_slot_S is not None else x
    bounds = [0] + offsets_E.tolist()
    pieces = []
    for expert in range(w_gate_EDF.shape[0]):
        x_chunk = x_SD[bounds[expert]:bounds[expert + 1]]
        hidden = F.silu(x_chunk @ w_gate_EDF[expert]) * (x_chunk @ w_up_EDF[expert])
        pieces.append(hidden @ w_down_EFD[expert])
    raw_SD = torch.cat(pieces) if pieces else x_SD.new_zeros(0, x.shape[-1])
    sums_ED = None
    if return_sums:
        counts_E = torch.diff(torch.tensor(bounds, device=x.device))
        expert_of_slot_S = torch.repeat_interleave(torch.arange(len(bounds) - 1, device=x.device), counts_E)
        sums_ED = torch.zeros(w_gate_EDF.shape[0], x.shape[-1], device=x.device).index_add(
            0, expert_of_slot_S, raw_SD.detach().float())
    if weight_S is None:
        out = raw_SD
    else:
        out = torch.zeros_like(x).index_add(0, token_of_slot_S, raw_SD * weight_S.to(raw_SD.dtype).unsqueeze(-1))
    return (out, sums_ED) if return_sums else out


# ------------------------------------------------------------------ expert-group means
def expert_group_means(raw_TKD: torch.Tensor, expert_idx_TK: torch.Tensor,
                       num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu_EED, counts_EE): mu[j, i] = mean of E_i(x') over tokens x' routed to both j and i (0 for empty
    cells), from the token-major layout raw_TKD[t, k] = E_{idx[t, k]}(x_t). Differentiable in raw."""
    selected_TKE = torch.nn.functional.one_hot(expert_idx_TK, num_experts).float()
    partners_TKE = selected_TKE.sum(1, keepdim=True) - selected_TKE  # the token's other experts j, per slot
    sums_JID = torch.einsum("tkj,tki,tkd->jid", partners_TKE, selected_TKE, raw_TKD.float())
    counts_JI = torch.einsum("tkj,tki->ji", partners_TKE, selected_TKE)
    return sums_JID / counts_JI.clamp(min=1).unsqueeze(-1), counts_JI


def expert_group_scatter_reference(raw_SD, token_of_slot_S, expert_of_slot_S, expert_idx_TK, num_experts):
    """``expert_group_means`` from expert-sorted slots: (means_EED [j, i], counts_EE)."""
    top_k = expert_idx_TK.shape[1]
    order_S = torch.argsort(expert_idx_TK.reshape(-1), stable=True)  # the slots' flat (token, k) positions
    raw_TKD = torch.empty_like(raw_SD).index_copy(0, order_S, raw_SD)
    return expert_group_means(raw_TKD.view(-1, top_k, raw_SD.shape[1]), expert_idx_TK, num_experts)


def expert_group_gather_reference(unselected_TE, means_EED, token_of_slot_S, offsets_E, top_k):
    """estimate_TD (fp32) = (1/K) sum_{s: t(s)=t} u[t] @ mu[e(s)]: token t's estimate of its missing experts."""
    estimate_TD = torch.zeros(unselected_TE.shape[0], means_EED.shape[2], device=means_EED.device)
    bounds = [0] + offsets_E.tolist()
    for expert in range(means_EED.shape[0]):
        tokens = token_of_slot_S[bounds[expert]:bounds[expert + 1]]
        estimate_TD = estimate_TD.index_add(0, tokens, unselected_TE[tokens].float() @ means_EED[expert].float())
    return estimate_TD / top_k
