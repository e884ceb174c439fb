"""Configuration of the MoE decoder-only transformer (plain dataclass: it is the CLI schema)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal, Optional

from lit_moe.errors import UserInputError
from lit_moe.model.backends import BACKEND_ALIASES, BACKENDS
from lit_moe.model.routers import ROUTING_RULES
from lit_moe.model.scoring import SCORE_FUNCTIONS

# The choices come from the registries: a new routing rule, backend or score function is one file.
RouterName = Literal[tuple(ROUTING_RULES)]
BackendName = Literal[tuple(BACKENDS) + tuple(BACKEND_ALIASES)]
ScoreFunctionName = Literal[tuple(SCORE_FUNCTIONS)]


@dataclass
class MoETransformerConfig:
    """Architecture of a decoder-only MoE language model.

    Args:
        vocab_size: Embedding rows. ``None`` takes the tokenizer's vocabulary size (linked from the
            datamodule); an explicit value may pad it (e.g. to a multiple of 64) but never be smaller.
        d_model: Residual stream width.
        n_layers: Number of transformer blocks.
        n_heads: Attention heads; ``d_model`` must be divisible by it.
        max_seq_len: Longest sequence the RoPE tables are built for.
        rope_theta: RoPE base frequency.
        norm_eps: RMSNorm epsilon.
        num_experts: Routed experts per MoE layer (N).
        top_k: Experts active per token (K).
        d_expert: Hidden width of each SwiGLU expert (F).
        num_shared_experts: Always-active experts of width ``d_expert`` added to every MoE layer.
        first_k_dense: The first k blocks use a dense SwiGLU MLP instead of an MoE layer.
        d_dense: Hidden width of the dense MLPs; ``None`` means ``top_k * d_expert`` (equal active
            parameters).
        router: Routing rule (``lit_moe/model/routers/``): ``topk`` (baseline), ``default`` (Default
            MoE, EMA default expert outputs), ``dense`` (straight-through reference, every expert on
            every token), ``expert_group`` (expert-group approximation of missing outputs).
        score_function: How logits become scores: ``softmax`` over all experts, or ``sigmoid`` per
            expert (DeepSeek-V3 style; pair with ``normalize_topk`` and ``bias_update_rate``).
        normalize_topk: Renormalise the K selected scores to sum to 1 (Mixtral style); ``False``
            weights by the softmax over all N (the Default-MoE authors' choice). Routers with a
            missing-expert term keep the renormalised forward value but take their router gradient
            through the unnormalised scores (see ``lit_moe/model/routers/base.py``).
        default_beta: EMA decay of the Default-MoE default vectors (paper value unverified; 0.9).
        default_mode: ``forward`` adds the default term to the output (stable, default);
            ``straight_through`` keeps the TopK forward value and only adds the router gradient.
        aux_loss_coef: Switch load-balancing loss weight (alpha); 0 disables it.
        z_loss_coef: Router z-loss weight; 0 disables it.
        bias_update_rate: Aux-loss-free balancing step u (DeepSeek-V3); 0 disables the biases.
        backend: Expert computation (``lit_moe/model/backends.py``): ``loop`` (reference: per-expert
            matmuls over sorted tokens), ``grouped_mm`` (``torch._grouped_mm``), ``fused`` (the Triton
            kernels of ``kernels/`` on CUDA; on CPU a hand-written torch path with oneDNN products,
            the fastest there). ``triton`` is the old name of ``fused`` (deprecated).
        tie_embeddings: Share the input embedding with the output projection.
        init_std: Standard deviation of the normal weight initialisation.
    """

    vocab_size: Optional[int] = None
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    num_experts: int = 8
    top_k: int = 2
    d_expert: int = 256
    num_shared_experts: int = 0
    first_k_dense: int = 0
    d_dense: Optional[int] = None
    router: RouterName = "topk"
    score_function: ScoreFunctionName = "softmax"
    normalize_topk: bool = False
    default_beta: float = 0.9
    default_mode: Literal["forward", "straight_through"] = "forward"
    aux_loss_coef: float = 0.01
    z_loss_coef: float = 0.0
    bias_update_rate: float = 0.0
    backend: BackendName = "loop"
    tie_embeddings: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.backend in BACKEND_ALIASES:
            warnings.warn(f"backend '{self.backend}' is deprecated: use '{BACKEND_ALIASES[self.backend]}' (same code)",
                          FutureWarning, stacklevel=3)
            self.backend = BACKEND_ALIASES[self.backend]
        problems = []
        for field, value, allowed in (("router", self.router, ROUTING_RULES), ("backend", self.backend, BACKENDS),
                                      ("score_function", self.score_function, SCORE_FUNCTIONS)):
            if value not in allowed:
                problems.append(f"{field}={value!r} is not one of {sorted(allowed)}")
        if self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        elif (self.d_model // self.n_heads) % 2:
            problems.append("the head dimension d_model/n_heads must be even for RoPE")
        if self.num_experts < 1:
            problems.append(f"num_experts={self.num_experts} must be >= 1")
        elif not 1 <= self.top_k <= self.num_experts:
            problems.append(f"top_k={self.top_k} must lie in [1, num_experts={self.num_experts}]")
        if not 0 <= self.first_k_dense <= self.n_layers:
            problems.append(f"first_k_dense={self.first_k_dense} must lie in [0, n_layers={self.n_layers}]")
        if not 0.0 <= self.default_beta < 1.0:
            problems.append(f"default_beta={self.default_beta} must lie in [0, 1)")
        if self.vocab_size is not None and self.vocab_size < 1:
            problems.append(f"vocab_size={self.vocab_size} must be positive")
        if problems:
            raise UserInputError("invalid model config: " + "; ".join(problems) + ".")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def dense_hidden(self) -> int:
        return self.d_dense if self.d_dense is not None else self.top_k * self.d_expert

    def num_parameters(self, vocab_size: Optional[int] = None) -> dict[str, int]:
        """Total and active (per token) parameter counts, computed from the config alone."""
        vocab = vocab_size if vocab_size is not None else self.vocab_size
        if vocab is None:
            raise ValueError("vocab_size is unknown: pass it or set config.vocab_size")
        d = self.d_model
        attn = 4 * d * d
        norms = 2 * d
        expert = 3 * d * self.d_expert
        shared = 3 * d * self.d_expert * self.num_shared_experts
        moe_block = attn + norms + d * self.num_experts + self.num_experts * expert + shared
        moe_active = attn + norms + d * self.num_experts + self.top_k * expert + shared
        dense_block = attn + norms + 3 * d * self.dense_hidden
        n_dense, n_moe = self.first_k_dense, self.n_layers - self.first_k_dense
        embeddings = vocab * d * (1 if self.tie_embeddings else 2)
        total = embeddings + d + n_dense * dense_block + n_moe * moe_block
        active = embeddings + d + n_dense * dense_block + n_moe * moe_active
        return {"total": total, "active": active}
