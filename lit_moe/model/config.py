"""Configuration of the MoE decoder-only transformer (plain dataclass: it is the CLI schema)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from lit_moe.errors import UserInputError
from lit_moe.model.backends import BACKEND_ALIASES, BACKENDS
from lit_moe.model.routers import ROUTING_RULES
from lit_moe.model.scoring import SCORE_FUNCTIONS

# The choices come from the registries: a new routing rule, backend or score function is one file.
RouterName = Literal[tuple(ROUTING_RULES)]
BackendName = Literal[tuple(BACKENDS) + tuple(BACKEND_ALIASES)]
ScoreFunctionName = Literal[tuple(SCORE_FUNCTIONS)]
QKNorm = Literal["none", "per_head", "full"]


@dataclass
class RopeScaling:
    """RoPE frequency scaling for contexts beyond the pretraining length (Hugging Face ``rope_scaling``).

    Args:
        type: ``default`` (none), ``linear`` (position interpolation), ``llama3`` (Llama 3.1) or ``yarn``.
        factor: Context extension factor.
        original_max_position_embeddings: Pretraining context (``llama3`` and ``yarn``).
        low_freq_factor: ``llama3``: wavelengths above original/low_freq_factor are divided by ``factor``.
        high_freq_factor: ``llama3``: wavelengths below original/high_freq_factor are kept.
        beta_fast: ``yarn``: rotations at which the ramp to the original frequencies ends.
        beta_slow: ``yarn``: rotations at which the ramp starts.
        attention_factor: ``yarn``: cos/sin multiplier; ``None`` = 0.1 ln(factor) + 1 (or the mscale ratio).
        mscale: ``yarn`` (DeepSeek): numerator mscale of the attention factor.
        mscale_all_dim: ``yarn`` (DeepSeek): denominator mscale of the attention factor.
        truncate: ``yarn``: round the ramp bounds to whole dimensions (Hugging Face default).
    """

    type: Literal["default", "linear", "llama3", "yarn"] = "default"
    factor: float = 1.0
    original_max_position_embeddings: int = 8192
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    attention_factor: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    truncate: bool = True


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
        default_ema_start: How an expert's default vector starts: ``zero`` (the paper: the EMA grows
            from 0, so after t updates it holds 1 - beta^t of the mean output; ~26% after 30 steps at
            beta 0.99), or ``first_mean`` (its first update sets it to that step's mean output, then the
            EMA continues; removes the warm-up). A vector that is exactly zero counts as never updated.
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
        n_kv_heads: Key/value heads of grouped-query attention; ``None`` = ``n_heads`` (multi-head).
        d_head: Width of each attention head; ``None`` = ``d_model / n_heads`` (Qwen3 sets it explicitly).
        qk_norm: RMSNorm on queries and keys before RoPE: ``none``, ``per_head`` (over each head's width,
            Qwen3 / Qwen3-MoE) or ``full`` (over the whole projected q / k width, OLMoE).
        qkv_bias: Biases on the q, k, v projections (Qwen2).
        out_bias: Bias on the attention output projection (Llama ``attention_bias``).
        clip_qkv: Clamp q, k and v to [-clip_qkv, clip_qkv] (OLMoE); ``None`` disables it.
        rope_scaling: RoPE frequency scaling (``linear``, ``llama3``, ``yarn``); ``None`` = plain RoPE.
        dense_layers: Indices of further blocks (besides the first ``first_k_dense``) that use a dense
            SwiGLU MLP instead of an MoE layer (Qwen-MoE ``mlp_only_layers`` / ``decoder_sparse_step``).
        d_shared: Total hidden width of the shared expert MLP; ``None`` = ``num_shared_experts * d_expert``.
        shared_expert_gate: Scale the shared experts' output by sigmoid(w^T x) with a learned w (Qwen2-MoE).
    """

    vocab_size: int | None = None
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
    d_dense: int | None = None
    router: RouterName = "topk"
    score_function: ScoreFunctionName = "softmax"
    normalize_topk: bool = False
    default_beta: float = 0.9
    default_mode: Literal["forward", "straight_through"] = "forward"
    default_ema_start: Literal["zero", "first_mean"] = "zero"
    aux_loss_coef: float = 0.01
    z_loss_coef: float = 0.0
    bias_update_rate: float = 0.0
    backend: BackendName = "loop"
    tie_embeddings: bool = False
    init_std: float = 0.02
    n_kv_heads: int | None = None
    d_head: int | None = None
    qk_norm: QKNorm = "none"
    qkv_bias: bool = False
    out_bias: bool = False
    clip_qkv: float | None = None
    rope_scaling: RopeScaling | None = None
    dense_layers: list[int] = field(default_factory=list)
    d_shared: int | None = None
    shared_expert_gate: bool = False

    def __post_init__(self) -> None:
        if self.backend in BACKEND_ALIASES:
            warnings.warn(f"backend '{self.backend}' is deprecated: use '{BACKEND_ALIASES[self.backend]}' (same code)",
                          FutureWarning, stacklevel=3)
            self.backend = BACKEND_ALIASES[self.backend]
        problems = []
        for key, value, allowed in (("router", self.router, ROUTING_RULES), ("backend", self.backend, BACKENDS),
                                    ("score_function", self.score_function, SCORE_FUNCTIONS)):
            if value not in allowed:
                problems.append(f"{key}={value!r} is not one of {sorted(allowed)}")
        if isinstance(self.rope_scaling, dict):  # plain mapping from YAML / a saved hparams file
            self.rope_scaling = RopeScaling(**self.rope_scaling)
        self.dense_layers = sorted({int(i) for i in self.dense_layers})
        if self.d_head is None and self.d_model % self.n_heads:
            problems.append(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads} (or set d_head)")
        elif self.head_dim % 2:
            problems.append(f"the head dimension {self.head_dim} must be even for RoPE")
        kv_heads = self.kv_heads
        if kv_heads < 1 or self.n_heads % kv_heads:
            problems.append(f"n_heads={self.n_heads} must be a multiple of n_kv_heads={kv_heads}")
        if self.qk_norm not in ("none", "per_head", "full"):
            problems.append(f"qk_norm={self.qk_norm!r} must be one of none, per_head, full")
        if self.clip_qkv is not None and self.clip_qkv <= 0:
            problems.append(f"clip_qkv={self.clip_qkv} must be positive (or null)")
        bad_layers = [i for i in self.dense_layers if not 0 <= i < self.n_layers]
        if bad_layers:
            problems.append(f"dense_layers {bad_layers} must lie in [0, n_layers={self.n_layers})")
        if self.d_shared is not None and self.d_shared < 1:
            problems.append(f"d_shared={self.d_shared} must be positive (or null)")
        scaling = self.rope_scaling
        if scaling is not None and scaling.type not in ("default", "linear", "llama3", "yarn"):
            problems.append(f"rope_scaling.type={scaling.type!r} must be one of default, linear, llama3, yarn")
        elif scaling is not None and scaling.type != "default" and scaling.factor <= 0:
            problems.append(f"rope_scaling.factor={scaling.factor} must be positive")
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
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def shared_hidden(self) -> int:
        """Hidden width of the shared expert MLP (0 when the MoE layers have none)."""
        if self.num_shared_experts <= 0:
            return 0
        return self.d_shared if self.d_shared is not None else self.d_expert * self.num_shared_experts

    def is_moe_block(self, index: int) -> bool:
        return index >= self.first_k_dense and index not in self.dense_layers

    @property
    def dense_hidden(self) -> int:
        return self.d_dense if self.d_dense is not None else self.top_k * self.d_expert

    def num_parameters(self, vocab_size: int | None = None) -> dict[str, int]:
        """Total and active (per token) parameter counts, computed from the config alone."""
        vocab = vocab_size if vocab_size is not None else self.vocab_size
        if vocab is None:
            raise ValueError("vocab_size is unknown: pass it or set config.vocab_size")
        d = self.d_model
        q_width, kv_width = self.n_heads * self.head_dim, self.kv_heads * self.head_dim
        attn = d * (q_width + 2 * kv_width) + q_width * d
        attn += (q_width + 2 * kv_width) * self.qkv_bias + d * self.out_bias
        attn += {"none": 0, "per_head": 2 * self.head_dim, "full": q_width + kv_width}[self.qk_norm]
        norms = 2 * d
        expert = 3 * d * self.d_expert
        shared = 3 * d * self.shared_hidden + (d if self.shared_hidden and self.shared_expert_gate else 0)
        moe_block = attn + norms + d * self.num_experts + self.num_experts * expert + shared
        moe_active = attn + norms + d * self.num_experts + self.top_k * expert + shared
        dense_block = attn + norms + 3 * d * self.dense_hidden
        n_moe = sum(self.is_moe_block(i) for i in range(self.n_layers))
        n_dense = self.n_layers - n_moe
        embeddings = vocab * d * (1 if self.tie_embeddings else 2)
        total = embeddings + d + n_dense * dense_block + n_moe * moe_block
        active = embeddings + d + n_dense * dense_block + n_moe * moe_active
        return {"total": total, "active": active}
