"""Dense building blocks: RMSNorm, rotary embeddings, causal self-attention (GQA, q/k norm, KV cache),
SwiGLU MLP.

Shape legend: B batch, S sequence (new tokens), L cached + new positions, D model width, H query heads,
G key/value heads, Dh head width, F hidden width, R rotary frequencies (Dh/2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lit_moe.model.config import RopeScaling


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain, computed in fp32."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x_BSD: torch.Tensor) -> torch.Tensor:
        x_float = x_BSD.float()
        normed = x_float * torch.rsqrt(x_float.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x_BSD.dtype)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies (R,) of rotary embeddings and the factor that multiplies cos/sin.

    ``scaling`` follows the published recipes: ``linear`` (position interpolation: frequencies / factor),
    ``llama3`` (Llama 3.1: low frequencies / factor, high ones kept, a smooth ramp between) and ``yarn``
    (NTK-by-parts ramp between interpolated and original frequencies, cos/sin times 0.1 ln(factor) + 1).
    """
    inv_freq_R = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    if scaling is None or scaling.type == "default":
        return inv_freq_R, 1.0
    factor = scaling.factor
    if scaling.type == "linear":
        return inv_freq_R / factor, 1.0
    if scaling.type == "llama3":
        low_wavelen = scaling.original_max_position_embeddings / scaling.low_freq_factor
        high_wavelen = scaling.original_max_position_embeddings / scaling.high_freq_factor
        wavelen_R = 2 * math.pi / inv_freq_R
        scaled_R = torch.where(wavelen_R > low_wavelen, inv_freq_R / factor, inv_freq_R)
        smooth_R = ((scaling.original_max_position_embeddings / wavelen_R - scaling.low_freq_factor)
                    / (scaling.high_freq_factor - scaling.low_freq_factor))
        smoothed_R = (1 - smooth_R) * scaled_R / factor + smooth_R * scaled_R
        medium_R = (wavelen_R >= high_wavelen) & (wavelen_R <= low_wavelen)
        return torch.where(medium_R, smoothed_R, scaled_R), 1.0
    # yarn
    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention_factor = scaling.attention_factor
    if attention_factor is None:
        if scaling.mscale and scaling.mscale_all_dim:
            attention_factor = mscale(factor, scaling.mscale) / mscale(factor, scaling.mscale_all_dim)
        else:
            attention_factor = mscale(factor)

    def correction_dim(rotations: float) -> float:
        return (head_dim * math.log(scaling.original_max_position_embeddings / (rotations * 2 * math.pi))
                / (2 * math.log(theta)))

    low, high = correction_dim(scaling.beta_fast), correction_dim(scaling.beta_slow)
    if scaling.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp_R = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    extrapolation_R = 1 - ramp_R
    pos_freqs_R = theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    inv_freq_R = (1.0 / (factor * pos_freqs_R)) * (1 - extrapolation_R) + (1.0 / pos_freqs_R) * extrapolation_R
    return inv_freq_R, float(attention_factor)


def rope_tables(head_dim: int, max_seq_len: int, theta: float, scaling: RopeScaling | None = None,
                start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (S, Dh/2) for positions ``start .. start + max_seq_len - 1``."""
    inv_freq_R, attention_factor = rope_inv_freq(head_dim, theta, scaling)
    return rope_from_inv_freq(inv_freq_R, start, max_seq_len, attention_factor)


def rope_from_inv_freq(inv_freq_R: torch.Tensor, start: int, length: int, attention_factor: float = 1.0
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    positions_S = torch.arange(start, start + length, dtype=torch.float32, device=inv_freq_R.device)
    angles_SR = torch.outer(positions_S, inv_freq_R.float())
    cos_SR, sin_SR = angles_SR.cos(), angles_SR.sin()
    if attention_factor != 1.0:
        cos_SR, sin_SR = cos_SR * attention_factor, sin_SR * attention_factor
    return cos_SR, sin_SR


def apply_rope(x_BHSDh: torch.Tensor, cos_SR: torch.Tensor, sin_SR: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :Dh/2], x[..., Dh/2:]) by the position angle (GPT-NeoX layout)."""
    seq_len = x_BHSDh.shape[-2]
    cos, sin = cos_SR[:seq_len].to(x_BHSDh.dtype), sin_SR[:seq_len].to(x_BHSDh.dtype)
    first, second = x_BHSDh.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class KVCache:
    """Keys and values of one attention layer for incremental decoding (preallocated to ``capacity``)."""

    def __init__(self, batch: int, n_kv_heads: int, capacity: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.k_BGLDh = torch.zeros(batch, n_kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.v_BGLDh = torch.zeros_like(self.k_BGLDh)
        self.length = 0

    def append(self, k_BGSDh: torch.Tensor, v_BGSDh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k_BGSDh.shape[2]
        if end > self.k_BGLDh.shape[2]:
            raise ValueError(f"KV cache holds {self.k_BGLDh.shape[2]} positions; {end} requested")
        self.k_BGLDh[:, :, self.length:end] = k_BGSDh
        self.v_BGLDh[:, :, self.length:end] = v_BGSDh
        self.length = end
        return self.k_BGLDh[:, :, :end], self.v_BGLDh[:, :, :end]


class CausalSelfAttention(nn.Module):
    """Causal self-attention with RoPE and PyTorch's fused SDPA.

    Options (defaults reproduce plain multi-head attention): grouped-query attention (``n_kv_heads``
    key/value heads shared by ``n_heads / n_kv_heads`` query heads each), an explicit ``head_dim``,
    biases on the q/k/v projections and/or the output projection, q/k RMSNorm ``per_head`` (over each
    head's Dh, Qwen3) or ``full`` (over the whole projected width, OLMoE), ``clip_qkv`` (clamp q, k, v
    to [-c, c] after the norm, OLMoE) and RoPE scaling. The q, k and v projections are one fused
    Linear whose output rows are [q (H*Dh) | k (G*Dh) | v (G*Dh)].
    """

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, rope_theta: float,
                 n_kv_heads: int | None = None, head_dim: int | None = None, qkv_bias: bool = False,
                 out_bias: bool = False, qk_norm: str = "none", norm_eps: float = 1e-5,
                 clip_qkv: float | None = None, rope_scaling: RopeScaling | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        self.head_dim = head_dim or d_model // n_heads
        q_width, kv_width = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        self.q_width, self.kv_width = q_width, kv_width
        self.qkv = nn.Linear(d_model, q_width + 2 * kv_width, bias=qkv_bias)
        self.out = nn.Linear(q_width, d_model, bias=out_bias)
        self.qk_norm = qk_norm
        if qk_norm == "per_head":
            self.q_norm, self.k_norm = RMSNorm(self.head_dim, norm_eps), RMSNorm(self.head_dim, norm_eps)
        elif qk_norm == "full":
            self.q_norm, self.k_norm = RMSNorm(q_width, norm_eps), RMSNorm(kv_width, norm_eps)
        self.clip_qkv = clip_qkv
        self.max_seq_len, self.rope_theta, self.rope_scaling = max_seq_len, rope_theta, rope_scaling
        inv_freq_R, self.rope_attention_factor = rope_inv_freq(self.head_dim, rope_theta, rope_scaling)
        self.register_buffer("rope_inv_freq", inv_freq_R, persistent=False)

    @torch.no_grad()
    def reset_rope(self) -> None:
        inv_freq_R, self.rope_attention_factor = rope_inv_freq(self.head_dim, self.rope_theta, self.rope_scaling)
        self.rope_inv_freq.copy_(inv_freq_R)

    def forward(self, x_BSD: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        batch, seq_len, _ = x_BSD.shape
        start = cache.length if cache is not None else 0
        if start + seq_len > self.max_seq_len:
            raise ValueError(f"sequence length {start + seq_len} exceeds max_seq_len={self.max_seq_len}")
        qkv_BSW = self.qkv(x_BSD)
        q_BSW, k_BSW, v_BSW = qkv_BSW.split([self.q_width, self.kv_width, self.kv_width], dim=-1)
        if self.qk_norm == "full":
            q_BSW, k_BSW = self.q_norm(q_BSW), self.k_norm(k_BSW)
        q_BSHDh = q_BSW.reshape(batch, seq_len, self.n_heads, self.head_dim)
        k_BSGDh = k_BSW.reshape(batch, seq_len, self.n_kv_heads, self.head_dim)
        v_BSGDh = v_BSW.reshape(batch, seq_len, self.n_kv_heads, self.head_dim)
        if self.qk_norm == "per_head":
            q_BSHDh, k_BSGDh = self.q_norm(q_BSHDh), self.k_norm(k_BSGDh)
        if self.clip_qkv is not None:
            c = self.clip_qkv
            q_BSHDh, k_BSGDh, v_BSGDh = q_BSHDh.clamp(-c, c), k_BSGDh.clamp(-c, c), v_BSGDh.clamp(-c, c)
        cos_SR, sin_SR = rope_from_inv_freq(self.rope_inv_freq, start, seq_len, self.rope_attention_factor)
        q_BHSDh = apply_rope(q_BSHDh.transpose(1, 2), cos_SR, sin_SR)
        k_BGSDh = apply_rope(k_BSGDh.transpose(1, 2), cos_SR, sin_SR)
        v_BGSDh = v_BSGDh.transpose(1, 2)
        mask_SL, is_causal = None, True
        if cache is not None:
            k_BGSDh, v_BGSDh = cache.append(k_BGSDh, v_BGSDh)
            if start > 0:
                is_causal = False
                if seq_len > 1:  # new token i sees cached positions and new positions <= i
                    positions_L = torch.arange(start + seq_len, device=x_BSD.device)
                    mask_SL = positions_L[None, :] <= (start + torch.arange(seq_len, device=x_BSD.device))[:, None]
        gqa = self.n_kv_heads != self.n_heads
        attn_BHSDh = F.scaled_dot_product_attention(q_BHSDh, k_BGSDh, v_BGSDh, attn_mask=mask_SL,
                                                    is_causal=is_causal, enable_gqa=gqa)
        return self.out(attn_BHSDh.transpose(1, 2).reshape(batch, seq_len, self.q_width))


class SwiGLU(nn.Module):
    """Dense SwiGLU MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_hidden, bias=False)
        self.up = nn.Linear(d_model, d_hidden, bias=False)
        self.down = nn.Linear(d_hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))
