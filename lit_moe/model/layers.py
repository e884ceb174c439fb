"""Dense building blocks: RMSNorm, rotary embeddings, causal self-attention, SwiGLU MLP.

Shape legend: B batch, S sequence, D model width, H heads, Dh head width, F hidden width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


def rope_tables(head_dim: int, max_seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables of shape (S, Dh/2) for rotary position embeddings."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles_SR = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
    return angles_SR.cos(), angles_SR.sin()


def apply_rope(x_BHSDh: torch.Tensor, cos_SR: torch.Tensor, sin_SR: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., :Dh/2], x[..., Dh/2:]) by the position angle (GPT-NeoX layout)."""
    seq_len = x_BHSDh.shape[-2]
    cos, sin = cos_SR[:seq_len].to(x_BHSDh.dtype), sin_SR[:seq_len].to(x_BHSDh.dtype)
    first, second = x_BHSDh.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with RoPE, using PyTorch's fused SDPA."""

    def __init__(self, d_model: int, n_heads: int, max_seq_len: int, rope_theta: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.max_seq_len, self.rope_theta = max_seq_len, rope_theta
        cos_SR, sin_SR = rope_tables(self.head_dim, max_seq_len, rope_theta)
        self.register_buffer("rope_cos", cos_SR, persistent=False)
        self.register_buffer("rope_sin", sin_SR, persistent=False)

    @torch.no_grad()
    def reset_rope(self) -> None:
        cos_SR, sin_SR = rope_tables(self.head_dim, self.max_seq_len, self.rope_theta)
        self.rope_cos.copy_(cos_SR)
        self.rope_sin.copy_(sin_SR)

    def forward(self, x_BSD: torch.Tensor) -> torch.Tensor:
        batch, seq_len, d_model = x_BSD.shape
        if seq_len > self.rope_cos.shape[0]:
            raise ValueError(f"sequence length {seq_len} exceeds max_seq_len={self.rope_cos.shape[0]}")
        qkv_BS3HDh = self.qkv(x_BSD).view(batch, seq_len, 3, self.n_heads, self.head_dim)
        q_BHSDh, k_BHSDh, v_BHSDh = qkv_BS3HDh.permute(2, 0, 3, 1, 4).unbind(0)
        q_BHSDh = apply_rope(q_BHSDh, self.rope_cos, self.rope_sin)
        k_BHSDh = apply_rope(k_BHSDh, self.rope_cos, self.rope_sin)
        attn_BHSDh = F.scaled_dot_product_attention(q_BHSDh, k_BHSDh, v_BHSDh, is_causal=True)
        return self.out(attn_BHSDh.transpose(1, 2).reshape(batch, seq_len, d_model))


class SwiGLU(nn.Module):
    """Dense SwiGLU MLP: down(silu(gate(x)) * up(x))."""

    def __init__(self, d_model: int, d_hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, d_hidden, bias=False)
        self.up = nn.Linear(d_model, d_hidden, bias=False)
        self.down = nn.Linear(d_hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))
