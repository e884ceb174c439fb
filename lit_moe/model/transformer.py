"""Decoder-only MoE transformer: pre-norm blocks of causal attention and (MoE or dense) SwiGLU.

Shape legend: B batch, S sequence, D model width, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn

from lit_moe.model.config import MoETransformerConfig
from lit_moe.model.experts import scaled_init_std
from lit_moe.model.layers import CausalSelfAttention, RMSNorm, SwiGLU
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
        self.attn = CausalSelfAttention(config.d_model, config.n_heads, config.max_seq_len, config.rope_theta)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MoELayer(config) if use_moe else SwiGLU(config.d_model, config.dense_hidden)

    def forward(self, x_BSD: torch.Tensor) -> tuple[torch.Tensor, Optional[MoEStats]]:
        x_BSD = x_BSD + self.attn(self.attn_norm(x_BSD))
        if isinstance(self.mlp, MoELayer):
            mlp_out, stats = self.mlp(self.mlp_norm(x_BSD))
            return x_BSD + mlp_out, stats
        return x_BSD + self.mlp(self.mlp_norm(x_BSD)), None


class MoETransformer(nn.Module):
    """Token embedding, ``n_layers`` blocks (the first ``first_k_dense`` dense), final norm, head."""

    def __init__(self, config: MoETransformerConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("MoETransformerConfig.vocab_size must be set before building the model")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(
            Block(config, use_moe=index >= config.first_k_dense) for index in range(config.n_layers))
        self.final_norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """(Re)initialise every parameter and buffer; also materialises a model built on the meta
        device after ``to_empty`` (works on FSDP2-sharded DTensor parameters)."""
        std = self.config.init_std
        residual_std = scaled_init_std(std, self.config.n_layers)
        with torch.no_grad():
            for name, param in self.named_parameters():
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

    def forward(self, tokens_BS: torch.Tensor) -> TransformerOutput:
        x_BSD = self.embed(tokens_BS)
        moe_stats: dict[int, MoEStats] = {}
        for index, block in enumerate(self.blocks):
            x_BSD, stats = block(x_BSD)
            if stats is not None:
                moe_stats[index] = stats
        return TransformerOutput(self.lm_head(self.final_norm(x_BSD)), moe_stats)

    def update_router_state(self, stats_by_layer: dict[int, MoEStats]) -> None:
        """Apply each MoE layer's per-step state update (Default-MoE EMA, balancing biases)."""
        for index, layer in self.moe_layers().items():
            if index in stats_by_layer:
                layer.update_router_state(stats_by_layer[index])
