"""Decoder-only MoE transformer: pre-norm blocks of causal attention and (MoE or dense) SwiGLU.

Shape legend: B batch, S sequence, D model width, V vocabulary.

Activation checkpointing and sharding are applied from outside (``lit_moe.parallelize``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.experts import scaled_init_std
from lit_moe.model.layers import CausalSelfAttention, KVCache, RMSNorm, SwiGLU
from lit_moe.model.moe_layer import MoELayer, MoEStats


@dataclass
class TransformerOutput:
    logits_BSV: torch.Tensor
    moe_stats: dict[int, MoEStats] = field(default_factory=dict)  # block index -> layer stats

    def auxiliary_loss(self) -> torch.Tensor:
        """Sum of every MoE layer's load-balancing and z-losses (already weighted)."""
        total = self.logits_BSV.new_zeros((), dtype=torch.float32)
        for stats in self.moe_stats.values():
            total = total + stats.aux_loss + stats.z_loss
        return total


class Block(nn.Module):
    def __init__(self, config: MoETransformerConfig, use_moe: bool) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = CausalSelfAttention(
            config.d_model, config.n_heads, config.max_seq_len, config.rope_theta, n_kv_heads=config.kv_heads,
            head_dim=config.head_dim, qkv_bias=config.qkv_bias, out_bias=config.out_bias, qk_norm=config.qk_norm,
            norm_eps=config.norm_eps, clip_qkv=config.clip_qkv, rope_scaling=config.rope_scaling)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MoELayer(config) if use_moe else SwiGLU(config.d_model, config.dense_hidden)

    def forward(self, x_BSD: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, MoEStats | None]:
        x_BSD = x_BSD + self.attn(self.attn_norm(x_BSD), cache)
        if isinstance(self.mlp, MoELayer):
            mlp_out, stats = self.mlp(self.mlp_norm(x_BSD))
            return x_BSD + mlp_out, stats
        return x_BSD + self.mlp(self.mlp_norm(x_BSD)), None


class MoETransformer(nn.Module):
    """Token embedding, ``n_layers`` blocks (the first ``first_k_dense`` and those in ``dense_layers``
    dense), final norm, head."""

    def __init__(self, config: MoETransformerConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("MoETransformerConfig.vocab_size must be set before building the model")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(
            Block(config, use_moe=config.is_moe_block(index)) for index in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.tie_weights()
        self.reset_parameters()

    def tie_weights(self) -> None:
        """Share the embedding with the output projection (``tie_embeddings``); call again after
        ``to_empty``, which materialises the two modules' parameters separately."""
        if self.config.tie_embeddings:
            self.lm_head.weight = self.embed.weight

    def reset_parameters(self) -> None:
        """(Re)initialise every parameter and buffer; also materialises a model built on the meta
        device after ``to_empty`` (works on FSDP2-sharded DTensor parameters)."""
        std = self.config.init_std
        residual_std = scaled_init_std(std, self.config.n_layers)
        with torch.no_grad():
            for name, param in self.named_parameters():
                if name.endswith(".bias"):
                    param.zero_()
                    continue
                if param.dim() < 2:
                    param.fill_(1.0)  # RMSNorm gains
                    continue
                is_residual_out = name.endswith(("attn.out.weight", "down.weight", "w_down_EFD"))
                nn.init.normal_(param, std=residual_std if is_residual_out else std)
            for module in self.modules():
                if isinstance(module, CausalSelfAttention):
                    module.reset_rope()
                elif isinstance(module, MoELayer):
                    module.reset_router_state()

    def moe_layers(self) -> dict[int, MoELayer]:
        return {i: block.mlp for i, block in enumerate(self.blocks) if isinstance(block.mlp, MoELayer)}

    def new_kv_caches(self, batch: int, capacity: int) -> list[KVCache]:
        """Empty per-block KV caches for incremental decoding of up to ``capacity`` positions."""
        ref = self.embed.weight
        return [KVCache(batch, block.attn.n_kv_heads, capacity, block.attn.head_dim, ref.dtype, ref.device)
                for block in self.blocks]

    def forward(self, tokens_BS: torch.Tensor, kv_caches: list[KVCache] | None = None) -> TransformerOutput:
        """Logits of every position; with ``kv_caches`` (from ``new_kv_caches``) the tokens continue
        the cached sequence and their keys/values are appended (generation)."""
        x_BSD = self.embed(tokens_BS)
        moe_stats: dict[int, MoEStats] = {}
        for index, block in enumerate(self.blocks):
            x_BSD, stats = block(x_BSD) if kv_caches is None else block(x_BSD, kv_caches[index])
            if stats is not None:
                moe_stats[index] = stats
        return TransformerOutput(self.lm_head(self.final_norm(x_BSD)), moe_stats)

    def update_router_state(self, stats_by_layer: dict[int, MoEStats]) -> None:
        """Apply each MoE layer's per-step state update (Default-MoE EMA, balancing biases)."""
        for index, layer in self.moe_layers().items():
            if index in stats_by_layer:
                layer.update_router_state(stats_by_layer[index])
