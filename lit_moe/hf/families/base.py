"""What a Hugging Face model family is to the converter: its on-disk key names and config translation.

Adding a family is one file in this package that builds a ``Family`` and registers it in
``families/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lit_moe.errors import UserInputError
from lit_moe.model.config import MoETransformerConfig, RopeScaling


@dataclass(frozen=True)
class Family:
    """One transformers architecture (``model_type``) and how its checkpoints map onto ours.

    Args:
        model_type: ``config.json``'s ``model_type``.
        architecture: transformers class name written to ``config.json``'s ``architectures``.
        config_fields: transformers config object -> ``MoETransformerConfig`` keyword arguments.
        hf_config: our config -> keyword arguments of the transformers config class.
        unsupported: our config -> reasons this family cannot represent it exactly (empty = exportable).
        moe_prefix: Module name of the MoE block inside a decoder layer (Mixtral: ``block_sparse_moe``).
        expert_names: On-disk names of each routed expert's (gate, up, down) projections.
        shared_expert: The MoE block has a sigmoid-gated shared expert (``shared_expert``,
            ``shared_expert_gate``), Qwen2-MoE style.
    """

    model_type: str
    architecture: str
    config_fields: Callable[[Any], dict]
    hf_config: Callable[[MoETransformerConfig], dict]
    unsupported: Callable[[MoETransformerConfig], list[str]]
    moe_prefix: str = "mlp"
    expert_names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj")
    shared_expert: bool = False
    ignored_keys: tuple[str, ...] = field(default=("rotary_emb.inv_freq",))


def require_silu(hf: Any) -> None:
    act = getattr(hf, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise UserInputError(f"hidden_act={act!r} is not supported (only SwiGLU with silu): {hf.model_type}")


def rope_fields(hf: Any) -> dict:
    """``rope_theta`` and ``rope_scaling`` from transformers' standardised ``rope_parameters``."""
    params = dict(getattr(hf, "rope_parameters", None) or {})
    if not params:  # transformers < 5 style
        params = dict(getattr(hf, "rope_scaling", None) or {})
        params.setdefault("rope_theta", getattr(hf, "rope_theta", 10000.0))
    theta = float(params.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    if kind == "default":
        return {"rope_theta": theta, "rope_scaling": None}
    if kind not in ("linear", "llama3", "yarn"):
        raise UserInputError(f"rope_type={kind!r} is not supported (default, linear, llama3, yarn): {hf.model_type}")
    factor = params.get("factor")
    original = params.get("original_max_position_embeddings") or getattr(hf, "max_position_embeddings", 8192)
    if factor is None:
        factor = hf.max_position_embeddings / original
    scaling = RopeScaling(
        type=kind, factor=float(factor), original_max_position_embeddings=int(original),
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        beta_fast=float(params.get("beta_fast") or 32.0), beta_slow=float(params.get("beta_slow") or 1.0),
        attention_factor=params.get("attention_factor"), mscale=params.get("mscale"),
        mscale_all_dim=params.get("mscale_all_dim"), truncate=bool(params.get("truncate", True)))
    return {"rope_theta": theta, "rope_scaling": scaling}


def rope_parameters(config: MoETransformerConfig) -> dict:
    """Inverse of ``rope_fields``: transformers 5 ``rope_parameters``."""
    scaling = config.rope_scaling
    if scaling is None or scaling.type == "default":
        return {"rope_type": "default", "rope_theta": config.rope_theta}
    params: dict = {"rope_type": scaling.type, "rope_theta": config.rope_theta, "factor": scaling.factor}
    if scaling.type == "llama3":
        params.update(low_freq_factor=scaling.low_freq_factor, high_freq_factor=scaling.high_freq_factor,
                      original_max_position_embeddings=scaling.original_max_position_embeddings)
    elif scaling.type == "yarn":
        params.update(beta_fast=scaling.beta_fast, beta_slow=scaling.beta_slow, truncate=scaling.truncate,
                      original_max_position_embeddings=scaling.original_max_position_embeddings)
        for name in ("attention_factor", "mscale", "mscale_all_dim"):
            if getattr(scaling, name) is not None:
                params[name] = getattr(scaling, name)
    return params


def no_sliding_window(hf: Any) -> None:
    window = getattr(hf, "sliding_window", None)
    uses = getattr(hf, "use_sliding_window", window is not None)
    if uses and window and window < hf.max_position_embeddings:
        raise UserInputError(f"sliding-window attention (sliding_window={window}) is not supported: {hf.model_type}")


def attention_fields(hf: Any) -> dict:
    """Fields common to every family: widths, heads, norms, RoPE, embeddings."""
    require_silu(hf)
    no_sliding_window(hf)
    head_dim = getattr(hf, "head_dim", None)
    return dict(
        vocab_size=hf.vocab_size, d_model=hf.hidden_size, n_layers=hf.num_hidden_layers,
        n_heads=hf.num_attention_heads, n_kv_heads=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
        d_head=head_dim if head_dim and head_dim != hf.hidden_size // hf.num_attention_heads else None,
        max_seq_len=hf.max_position_embeddings, norm_eps=hf.rms_norm_eps,
        tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)), **rope_fields(hf))


def hf_attention_config(config: MoETransformerConfig) -> dict:
    return dict(
        vocab_size=config.vocab_size, hidden_size=config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        max_position_embeddings=config.max_seq_len, rms_norm_eps=config.norm_eps,
        tie_word_embeddings=config.tie_embeddings, rope_parameters=rope_parameters(config), hidden_act="silu")


def dense_fields(hf: Any) -> dict:
    """A dense model: every block is a SwiGLU of width ``intermediate_size`` (no MoE layer)."""
    return dict(num_experts=1, top_k=1, d_expert=hf.intermediate_size, first_k_dense=hf.num_hidden_layers,
                d_dense=hf.intermediate_size)


def moe_layer_indices(config: MoETransformerConfig) -> list[int]:
    return [i for i in range(config.n_layers) if config.is_moe_block(i)]


def common_unsupported(config: MoETransformerConfig, *, qk_norm: str, dense: bool, bias: str,
                       clip_qkv: bool = False) -> list[str]:
    """Reasons shared by the families: q/k norm kind, dense-vs-MoE, which projections have biases."""
    reasons = []
    if config.qk_norm != qk_norm:
        reasons.append(f"needs qk_norm={qk_norm!r} (model has {config.qk_norm!r})")
    has_moe = bool(moe_layer_indices(config))
    if dense and has_moe:
        reasons.append("is a dense family (the model has MoE layers)")
    if not dense and not has_moe:
        reasons.append("is an MoE family (the model has no MoE layer)")
    if bias == "none" and (config.qkv_bias or config.out_bias):
        reasons.append("has no attention biases")
    if bias == "all" and config.qkv_bias != config.out_bias:
        reasons.append("has one attention_bias flag for q/k/v and o together")
    if bias == "qkv" and config.out_bias:
        reasons.append("has no output-projection bias")
    if config.clip_qkv is not None and not clip_qkv:
        reasons.append("has no clip_qkv")
    return reasons
