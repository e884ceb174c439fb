"""Fused routing: softmax over all experts + top-K (+ Default-MoE default term), forward and backward.

Shape legend: T tokens, E experts, K experts per token, D model width.

    probs_TE   = softmax(logits_TE)                         (fp32, over all E experts)
    idx_TK     = TopK(probs_TE + bias_E)                     (bias only steers the selection)
    weights_TK = probs[idx]  (``normalize_topk``: softmax of the selected logits = probs[idx] / sum)
    default_TD = sum_{i not in idx} probs_{t,i} Ehat_i       (Ehat detached: Default MoE, spec 1.2)

Backward returns grad_logits_TE from the gradients of probs_TE, weights_TK and default_TD; the
default term sends every unselected expert's router row the gradient <g_t, Ehat_i>.
One Triton program handles BLOCK_T tokens with the whole expert row in registers (E padded to a
power of two, at least 16 so that the default term is a tensor-core dot).
"""

from __future__ import annotations

from typing import Optional

import torch

from kernels._triton import interpreting, resolve_impl, tl, triton
from kernels.reference import fused_routing_reference


# ------------------------------------------------------------------------------ kernels
@triton.jit
def _routing_fwd_kernel(
    logits_ptr, bias_ptr, ehat_ptr, probs_ptr, idx_ptr, weights_ptr, default_ptr,
    T, E, D,
    TOP_K: tl.constexpr, NORMALIZE: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_DEFAULT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    row_mask = rows < T
    cols = tl.arange(0, BLOCK_E)
    col_mask = cols < E
    mask = row_mask[:, None] & col_mask[None, :]
    off = rows.to(tl.int64)[:, None] * E + cols[None, :]
    logits = tl.load(logits_ptr + off, mask=mask, other=-float("inf")).to(tl.float32)
    logits = tl.where(mask, logits, -float("inf"))
    row_max = tl.max(logits, axis=1)
    row_max = tl.where(row_mask, row_max, 0.0)
    expo = tl.exp(logits - row_max[:, None])
    expo = tl.where(mask, expo, 0.0)
    denom = tl.sum(expo, axis=1)
    denom = tl.where(row_mask, denom, 1.0)
    probs = expo / denom[:, None]
    tl.store(probs_ptr + off, probs, mask=mask)
    scores = probs
    if HAS_BIAS:
        scores = scores + tl.load(bias_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    scores = tl.where(col_mask[None, :], scores, -float("inf"))
    selected = tl.zeros((BLOCK_T, BLOCK_E), dtype=tl.int1)
    total = tl.zeros((BLOCK_T,), dtype=tl.float32)
    for _ in tl.static_range(TOP_K):
        best = tl.argmax(scores, axis=1)
        hit = cols[None, :] == best[:, None]
        selected = selected | hit
        scores = tl.where(hit, -float("inf"), scores)
        total += tl.sum(tl.where(hit, probs, 0.0), axis=1)
    # second pass: write the selection in order, normalised by the selected total if asked
    scores2 = probs
    if HAS_BIAS:
        scores2 = scores2 + tl.load(bias_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)[None, :]
    scores2 = tl.where(col_mask[None, :], scores2, -float("inf"))
    for k in tl.static_range(TOP_K):
        best = tl.argmax(scores2, axis=1)
        hit = cols[None, :] == best[:, None]
        scores2 = tl.where(hit, -float("inf"), scores2)
        weight = tl.sum(tl.where(hit, probs, 0.0), axis=1)
        if NORMALIZE:
            weight = weight / total
        tl.store(idx_ptr + rows.to(tl.int64) * TOP_K + k, best.to(tl.int64), mask=row_mask)
        tl.store(weights_ptr + rows.to(tl.int64) * TOP_K + k, weight, mask=row_mask)
    if HAS_DEFAULT:
        unselected = tl.where(selected, 0.0, probs)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            d_mask = ds < D
            ehat = tl.load(ehat_ptr + cols[:, None] * D + ds[None, :],
                           mask=col_mask[:, None] & d_mask[None, :], other=0.0)
            if IEEE:
                out = tl.dot(unselected, ehat, input_precision="ieee")
            else:
                out = tl.dot(unselected, ehat)
            tl.store(default_ptr + rows.to(tl.int64)[:, None] * D + ds[None, :], out,
                     mask=row_mask[:, None] & d_mask[None, :])


@triton.jit
def _routing_bwd_kernel(
    probs_ptr, idx_ptr, weights_ptr, grad_probs_ptr, grad_weights_ptr, grad_default_ptr, ehat_ptr,
    grad_logits_ptr,
    T, E, D,
    TOP_K: tl.constexpr, NORMALIZE: tl.constexpr, HAS_GRAD_PROBS: tl.constexpr,
    HAS_GRAD_WEIGHTS: tl.constexpr, HAS_DEFAULT: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr,
):
    pid = tl.program_id(0)
    rows = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    row_mask = rows < T
    cols = tl.arange(0, BLOCK_E)
    col_mask = cols < E
    mask = row_mask[:, None] & col_mask[None, :]
    off = rows.to(tl.int64)[:, None] * E + cols[None, :]
    probs = tl.load(probs_ptr + off, mask=mask, other=0.0)
    if HAS_GRAD_PROBS:
        grad_p = tl.load(grad_probs_ptr + off, mask=mask, other=0.0).to(tl.float32)
    else:
        grad_p = tl.zeros((BLOCK_T, BLOCK_E), dtype=tl.float32)
    selected = tl.zeros((BLOCK_T, BLOCK_E), dtype=tl.int1)
    # With normalisation the weights are the softmax of the selected logits (as in lit_moe's router),
    # so their gradient goes straight to the selected logits: w_k (dw_k - sum_j w_j dw_j); the
    # unselected logits get exactly zero from this term.
    direct = tl.zeros((BLOCK_T, BLOCK_E), dtype=tl.float32)
    if HAS_GRAD_WEIGHTS:
        dot_gw = tl.zeros((BLOCK_T,), dtype=tl.float32)
        if NORMALIZE:
            for k in tl.static_range(TOP_K):
                gw = tl.load(grad_weights_ptr + rows.to(tl.int64) * TOP_K + k, mask=row_mask, other=0.0)
                w = tl.load(weights_ptr + rows.to(tl.int64) * TOP_K + k, mask=row_mask, other=0.0)
                dot_gw += gw * w
        for k in tl.static_range(TOP_K):
            gw = tl.load(grad_weights_ptr + rows.to(tl.int64) * TOP_K + k, mask=row_mask, other=0.0)
            idx = tl.load(idx_ptr + rows.to(tl.int64) * TOP_K + k, mask=row_mask, other=0)
            hit = cols[None, :] == idx[:, None]
            selected = selected | hit
            if NORMALIZE:
                w = tl.load(weights_ptr + rows.to(tl.int64) * TOP_K + k, mask=row_mask, other=0.0)
                direct += tl.where(hit, (w * (gw - dot_gw))[:, None], 0.0)
            else:
                grad_p += tl.where(hit, gw[:, None], 0.0)
    else:
        for k in tl.static_range(TOP_K):
            idx = tl.load(idx_ptr + rows.to(tl.int64) * TOP_K + k, mask=row_mask, other=0)
            selected = selected | (cols[None, :] == idx[:, None])
    if HAS_DEFAULT:
        grad_u = tl.zeros((BLOCK_T, BLOCK_E), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            ds = d0 + tl.arange(0, BLOCK_D)
            d_mask = ds < D
            g = tl.load(grad_default_ptr + rows.to(tl.int64)[:, None] * D + ds[None, :],
                        mask=row_mask[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
            ehat_t = tl.load(ehat_ptr + cols[None, :] * D + ds[:, None],
                             mask=col_mask[None, :] & d_mask[:, None], other=0.0)
            if IEEE:
                grad_u = tl.dot(g, ehat_t, grad_u, input_precision="ieee")
            else:
                grad_u = tl.dot(g, ehat_t, grad_u)
        grad_p += tl.where(selected, 0.0, grad_u)
    inner = tl.sum(probs * grad_p, axis=1)
    grad_logits = probs * (grad_p - inner[:, None]) + direct
    tl.store(grad_logits_ptr + off, grad_logits, mask=mask)


def _blocks(num_experts: int) -> dict:
    block_e = max(16, triton.next_power_of_2(num_experts))
    block_t = 64 if interpreting() else max(16, min(64, 4096 // block_e))
    return {"BLOCK_T": block_t, "BLOCK_E": block_e, "BLOCK_D": 64}


class _TritonRouting(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_TE, top_k, normalize_topk, bias_E, default_vectors_ED):
        logits_TE = logits_TE.float().contiguous()
        num_tokens, num_experts = logits_TE.shape
        has_default = default_vectors_ED is not None
        ehat_ED = default_vectors_ED.detach().float().contiguous() if has_default else logits_TE
        d_model = ehat_ED.shape[1] if has_default else 0
        probs_TE = torch.empty_like(logits_TE)
        idx_TK = torch.empty(num_tokens, top_k, dtype=torch.int64, device=logits_TE.device)
        weights_TK = torch.empty(num_tokens, top_k, dtype=torch.float32, device=logits_TE.device)
        default_TD = torch.empty(num_tokens, d_model, dtype=torch.float32, device=logits_TE.device) \
            if has_default else None
        blocks = _blocks(num_experts)
        if num_tokens:
            _routing_fwd_kernel[(triton.cdiv(num_tokens, blocks["BLOCK_T"]),)](
                logits_TE, bias_E.float().contiguous() if bias_E is not None else logits_TE, ehat_ED,
                probs_TE, idx_TK, weights_TK, default_TD if has_default else probs_TE,
                num_tokens, num_experts, d_model,
                TOP_K=top_k, NORMALIZE=normalize_topk, HAS_BIAS=bias_E is not None, HAS_DEFAULT=has_default,
                IEEE=True, **blocks)
        ctx.top_k, ctx.normalize_topk, ctx.has_default = top_k, normalize_topk, has_default
        ctx.save_for_backward(probs_TE, idx_TK, weights_TK, ehat_ED if has_default else None)
        ctx.mark_non_differentiable(idx_TK)
        return probs_TE, idx_TK, weights_TK, default_TD

    @staticmethod
    def backward(ctx, grad_probs_TE, _grad_idx, grad_weights_TK, grad_default_TD):
        probs_TE, idx_TK, weights_TK, ehat_ED = ctx.saved_tensors
        num_tokens, num_experts = probs_TE.shape
        has_default = ctx.has_default and grad_default_TD is not None
        grad_logits_TE = torch.empty_like(probs_TE)
        blocks = _blocks(num_experts)
        if num_tokens:
            _routing_bwd_kernel[(triton.cdiv(num_tokens, blocks["BLOCK_T"]),)](
                probs_TE, idx_TK, weights_TK,
                grad_probs_TE.float().contiguous() if grad_probs_TE is not None else probs_TE,
                grad_weights_TK.float().contiguous() if grad_weights_TK is not None else probs_TE,
                grad_default_TD.float().contiguous() if has_default else probs_TE,
                ehat_ED if has_default else probs_TE, grad_logits_TE,
                num_tokens, num_experts, ehat_ED.shape[1] if has_default else 0,
                TOP_K=ctx.top_k, NORMALIZE=ctx.normalize_topk, HAS_GRAD_PROBS=grad_probs_TE is not None,
                HAS_GRAD_WEIGHTS=grad_weights_TK is not None, HAS_DEFAULT=has_default, IEEE=True, **blocks)
        return grad_logits_TE, None, None, None, None


def fused_routing(logits_TE: torch.Tensor, top_k: int, normalize_topk: bool = False,
                  bias_E: Optional[torch.Tensor] = None, default_vectors_ED: Optional[torch.Tensor] = None,
                  impl: str = "auto"):
    """Softmax + top-K (+ default term). Returns (probs_TE, idx_TK, weights_TK, default_TD or None).

    ``impl``: ``auto`` (Triton on CUDA, torch elsewhere), ``triton``, ``torch`` or ``reference`` (for
    this op the torch path is the reference). Ties between equal probabilities may be broken
    differently by the two implementations.
    """
    if not 1 <= top_k <= logits_TE.shape[-1]:
        raise ValueError(f"fused_routing: top_k={top_k} must lie in [1, E={logits_TE.shape[-1]}]")
    if resolve_impl(impl, logits_TE) != "triton":
        return fused_routing_reference(logits_TE, top_k, normalize_topk, bias_E, default_vectors_ED)
    return _TritonRouting.apply(logits_TE, top_k, normalize_topk, bias_E, default_vectors_ED)
